// Command holoproxy is a Go module proxy that sees its whole network chain. Each
// subcommand lives in its own file (serve.go, ...) and only wires flags to the internal
// packages; this file holds the root command, the exit codes and the environment twins of
// the flags (env.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes of the command.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad usage: unknown command or flag, bad flag value
)

// stopSignals end a command the way Ctrl-C does: cleanly (answers in flight finished, fills
// and direct's processes ended, no temporary file left). SIGHUP is among them: a closed
// terminal or ssh session must not kill the process halfway, Go's default for it. A signal
// the process was started with ignored (nohup ignores SIGHUP; a shell's background job,
// SIGINT) stays ignored: handling it would undo what the caller asked. SIGTERM is always
// handled (and keeps the list from being empty, which signal.Notify reads as every
// signal). Computed before any signal.Notify, which ends the ignoring.
var stopSignals = append([]os.Signal{syscall.SIGTERM}, notIgnored(os.Interrupt, syscall.SIGHUP)...)

// closeWithin calls close with a context that ends after timeout, for what a command ends
// before it returns; logf reports its error.
func closeWithin(timeout time.Duration, close func(context.Context) error, logf func(format string, args ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := close(ctx); err != nil {
		logf("%v", err)
	}
}

// notIgnored returns the signals of sigs that the process was not started with ignored.
func notIgnored(sigs ...os.Signal) []os.Signal {
	var out []os.Signal
	for _, s := range sigs {
		if !signal.Ignored(s) {
			out = append(out, s)
		}
	}
	return out
}

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise it comes from
// the build information.
var version = ""

func main() {
	os.Exit(execute(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// execute runs the command line args with the environment getenv and returns the exit code.
func execute(args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) int {
	root := newRootCmd(getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "holoproxy: %v (see '%s --help')\n", err, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintf(stderr, "holoproxy: %v\n", err)
	return exitFailure
}

// newRootCmd builds the command tree. Subcommands are added here, one constructor per file.
func newRootCmd(getenv func(string) (string, bool)) *cobra.Command {
	// Run every parent's PersistentPreRunE, so the environment twins apply even below a
	// subcommand that has a persistent hook of its own.
	cobra.EnableTraverseRunHooks = true
	root := &cobra.Command{
		Use:   "holoproxy",
		Short: "A Go module proxy that sees its whole network chain",
		Long: "holoproxy is a Go module proxy that sees its whole network chain.\n\n" +
			"Every flag can also be set by its environment twin, HOLOPROXY_ and the flag name\n" +
			"in upper case with '-' as '_' (--list-ttl and HOLOPROXY_LIST_TTL); a flag given\n" +
			"on the command line wins over its twin.",
		Version:       buildVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("missing command")
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return applyEnvTwins(cmd, getenv)
		},
	}
	// The Go release and platform too: which fixes of the standard library (net/http,
	// crypto/tls) a running binary has is what a security advisory asks.
	root.SetVersionTemplate("holoproxy version {{.Version}} " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newServeCmd())
	root.AddCommand(newWarmCmd())
	root.AddCommand(newTraceCmd())
	root.AddCommand(newVerifyCmd())
	root.AddCommand(newTrimCmd())
	addEnvTwins(root)
	return root
}

// buildVersion returns the version set at link time, else the main module's version.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// noArgs is the Args check of a subcommand that takes no arguments: any is bad usage.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.Name(), args[0])
	}
	return nil
}

// usageError marks an error as bad usage (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error with a one-line reason.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}
