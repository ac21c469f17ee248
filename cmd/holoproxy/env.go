package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix starts the name of every flag's environment twin.
const envPrefix = "HOLOPROXY_"

// envName returns the environment twin of the flag named name: --list-ttl is
// HOLOPROXY_LIST_TTL.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// noTwin lists the flags that have no environment twin.
var noTwin = map[string]bool{"help": true, "version": true}

// addEnvTwins names the environment twin in the help text of every flag of cmd and of all
// its subcommands. Call it once, after every subcommand is added.
func addEnvTwins(cmd *cobra.Command) {
	note := func(f *pflag.Flag) {
		if noTwin[f.Name] || strings.Contains(f.Usage, "$"+envName(f.Name)) {
			return
		}
		f.Usage += " [$" + envName(f.Name) + "]"
	}
	cmd.LocalFlags().VisitAll(note)
	cmd.PersistentFlags().VisitAll(note)
	for _, sub := range cmd.Commands() {
		addEnvTwins(sub)
	}
}

// applyEnvTwins sets every flag of cmd (its own and those inherited) that was not given on
// the command line from its environment twin, when getenv finds one. A bad value is a
// usage error naming the variable.
func applyEnvTwins(cmd *cobra.Command, getenv func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || noTwin[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := getenv(name)
		if !ok {
			return
		}
		if e := cmd.Flags().Set(f.Name, v); e != nil {
			err = usagef("%s=%q: %v", name, v, e)
			return
		}
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[fromEnv] = []string{name}
	})
	return err
}

// fromEnv annotates a flag set by applyEnvTwins.
const fromEnv = "holoproxy_from_env"

// onCommandLine reports whether the flag name of cmd was given on the command line (not
// by its environment twin, which several subcommands may share).
func onCommandLine(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed && f.Annotations[fromEnv] == nil
}

// checkPositive returns a usage error unless every duration flag named in names of cmd is
// above zero.
func checkPositive(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		d, err := cmd.Flags().GetDuration(n)
		if err != nil {
			return fmt.Errorf("flag --%s: %w", n, err)
		}
		if d <= 0 {
			return usagef("--%s must be above zero, not %v", n, d)
		}
	}
	return nil
}

// byteSize is a flag holding a number of bytes, written with or without a unit: 1048576,
// 1MiB, 1MB, 1.5GiB (go-humanize's ParseBytes).
type byteSize int64

func (b byteSize) String() string { return humanize.IBytes(uint64(b)) }
func (b *byteSize) Type() string  { return "bytes" }

func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		// Not humanize's message, which shows the unit as it is, new lines and all.
		return fmt.Errorf("want a size such as 64MiB or 1GB, not %q", s)
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize(n)
	return nil
}

// config returns the size as a server.Config value, where 0 means the default and a
// negative value means off.
func (b byteSize) config() int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}
