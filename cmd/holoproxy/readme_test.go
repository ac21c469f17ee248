package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestREADMEListsEveryFlag keeps the README's configuration reference in step with the
// commands: every flag of every subcommand must be named there.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd(func(string) (string, bool) { return "", false })
	for _, sub := range root.Commands() {
		if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		sub.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			if !strings.Contains(string(readme), "`--"+f.Name+"`") {
				t.Errorf("README.md does not name %s --%s", sub.Name(), f.Name)
			}
		})
	}
}
