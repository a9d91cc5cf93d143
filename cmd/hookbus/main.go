// Command hookbus is the hookbus event bus: run it, validate its
// configuration, try scripts, send events, manage dead letters and the
// applications, subscriptions and tokens of the open platform, and find
// out what happened to an event (the delivery log).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError marks errors that exit with code 2 (usage or configuration).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usage(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	os.Exit(execute(os.Args[1:]))
}

func execute(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "hookbus:", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		return exitUsage
	}
	return exitRuntime
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "hookbus",
		Short:         "hookbus is an event bus that delivers signed webhooks",
		Long:          "hookbus takes events in from sources, runs them through JavaScript filter and transform scripts,\nand delivers them to sinks, above all as signed webhooks with durable retries.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(runCmd(), validateCmd(), testCmd(), scriptCmd(), sendCmd(), versionCmd(), deadLettersCmd(), pluginsCmd(), receiveCmd(), verifyCmd(), keygenCmd(), benchCmd(),
		appsCmd(), subscriptionsCmd(), tokensCmd(), attemptsCmd(), eventsCmd(), resendCmd(), recoverCmd(), statsCmd())
	root.AddCommand(storeCmd())
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// wrapArgs makes argument-count errors usage errors (exit 2).
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		orig := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the hookbus version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "hookbus", version)
			return nil
		},
	}
}
