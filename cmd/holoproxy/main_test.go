package main

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestEnvName(t *testing.T) {
	for _, tc := range []struct{ flag, env string }{
		{"list-ttl", "HOLOPROXY_LIST_TTL"},
		{"listen", "HOLOPROXY_LISTEN"},
		{"first-byte-timeout", "HOLOPROXY_FIRST_BYTE_TIMEOUT"},
	} {
		if got := envName(tc.flag); got != tc.env {
			t.Errorf("envName(%q) = %q; want %q", tc.flag, got, tc.env)
		}
	}
}

// TestEnvTwins checks that a twin sets a flag not given on the command line, that the
// command line wins, and that a bad value is a usage error naming the variable.
func TestEnvTwins(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var ttl time.Duration
	var name string
	newCmd := func() *cobra.Command {
		c := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
		c.Flags().DurationVar(&ttl, "list-ttl", time.Minute, "ttl")
		c.Flags().StringVar(&name, "name", "def", "name")
		c.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return applyEnvTwins(cmd, getenv) }
		c.SetOut(&bytes.Buffer{})
		c.SetErr(&bytes.Buffer{})
		return c
	}
	run := func(args ...string) error {
		c := newCmd()
		c.SetArgs(args)
		return c.Execute()
	}

	env["HOLOPROXY_LIST_TTL"] = "5s"
	env["HOLOPROXY_NAME"] = "fromenv"
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if ttl != 5*time.Second || name != "fromenv" {
		t.Errorf("from env: ttl=%v name=%q; want 5s, fromenv", ttl, name)
	}
	if err := run("--list-ttl=7s"); err != nil {
		t.Fatal(err)
	}
	if ttl != 7*time.Second || name != "fromenv" {
		t.Errorf("flag and env: ttl=%v name=%q; want the flag's 7s and the env's name", ttl, name)
	}
	env["HOLOPROXY_LIST_TTL"] = "soon"
	err := run()
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "HOLOPROXY_LIST_TTL") {
		t.Errorf("bad env value: err = %v; want a usage error naming HOLOPROXY_LIST_TTL", err)
	}
}

// TestHelpNamesEveryTwin checks that every flag of every subcommand shows its twin in help.
func TestHelpNamesEveryTwin(t *testing.T) {
	root := newRootCmd(func(string) (string, bool) { return "", false })
	var n int
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			n++
			if !strings.Contains(f.Usage, "[$"+envName(f.Name)+"]") {
				t.Errorf("%s --%s: usage %q does not name $%s", c.CommandPath(), f.Name, f.Usage, envName(f.Name))
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if n < 10 {
		t.Errorf("saw %d flags; want at least the 10 of serve", n)
	}
	var out bytes.Buffer
	if code := execute([]string{"serve", "--help"}, func(string) (string, bool) { return "", false }, &out, &out); code != exitOK {
		t.Fatalf("serve --help exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "$HOLOPROXY_LIST_TTL") {
		t.Errorf("serve --help does not name HOLOPROXY_LIST_TTL:\n%s", out.String())
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		path string // PATH for the run; "" keeps it
		code int
		want string // in stderr
		// wantOut, when set, is the whole of stdout.
		wantOut string
	}{
		{name: "no command", code: exitUsage, want: "missing command"},
		{name: "unknown command", args: []string{"bogus"}, code: exitUsage, want: `unknown command "bogus"`},
		{name: "unknown flag", args: []string{"serve", "--bogus"}, code: exitUsage, want: "unknown flag: --bogus"},
		{name: "bad duration", args: []string{"serve", "--list-ttl=x"}, code: exitUsage, want: "--list-ttl"},
		{name: "bad env twin", args: []string{"serve"}, env: map[string]string{"HOLOPROXY_NEGATIVE_TTL": "x"}, code: exitUsage, want: "HOLOPROXY_NEGATIVE_TTL"},
		{name: "negative timeout", args: []string{"serve", "--connect-timeout=-1s"}, code: exitUsage, want: "--connect-timeout must be above zero"},
		{name: "bad log level", args: []string{"serve", "--log-level=loud"}, code: exitUsage, want: "--log-level"},
		{name: "bad listen", args: []string{"serve", "--listen=nocolon"}, code: exitUsage, want: "--listen"},
		{name: "serve argument", args: []string{"serve", "now"}, code: exitUsage, want: "no arguments"},
		{name: "help", args: []string{"--help"}, code: exitOK},
		{name: "version", args: []string{"--version"}, code: exitOK, wantOut: "holoproxy version " + buildVersion() + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"},
		{name: "chain direct off", args: []string{"serve", "--upstream=direct", "--direct-jobs=0", "--cache-dir=" + t.TempDir()}, code: exitFailure, want: `no proxy before "direct"`},
		{name: "direct without go", args: []string{"serve", "--upstream=direct", "--cache-dir=" + t.TempDir()}, path: t.TempDir(), code: exitFailure, want: "direct needs the go command"},
		{name: "bad direct jobs", args: []string{"serve", "--direct-jobs=-1"}, code: exitUsage, want: "--direct-jobs"},
		{name: "bad upstream", args: []string{"serve", "--upstream=ftp://x", "--cache-dir=" + t.TempDir()}, code: exitFailure, want: "want an http, https or file URL"},
		{name: "upstream is self", args: []string{"serve", "--listen=127.0.0.1:7070", "--upstream=http://localhost:7070", "--cache-dir=" + t.TempDir()}, code: exitFailure, want: "own listen address"},
		{name: "no go command", args: []string{"serve", "--cache-dir=" + t.TempDir()}, path: t.TempDir(), code: exitFailure, want: "pass --upstream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			getenv := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			var out, errb bytes.Buffer
			code := execute(tc.args, getenv, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d; want %d\nstderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.want)
			}
			if tc.wantOut != "" && out.String() != tc.wantOut {
				t.Errorf("stdout %q; want %q", out.String(), tc.wantOut)
			}
			if tc.code == exitUsage {
				if lines := strings.Count(strings.TrimSpace(errb.String()), "\n"); lines != 0 {
					t.Errorf("usage error spans %d lines; want one:\n%s", lines+1, errb.String())
				}
			}
		})
	}
}
