// Command emrkit is the binary installed on clinic servers. It only wires the command tree.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/emrkit/emrkit"
	"github.com/emrkit/emrkit/pkg/cmd/root"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/redact"
	"github.com/emrkit/emrkit/pkg/release"
)

// version is the package version stamped in by `make`: -ldflags "-X main.version=0.4.0-1".
// Without it (go build, go install) the binary is the newest release of its source tree.
var version string

func main() {
	build, err := release.Resolve(version, emrkit.Changelog)
	if err != nil {
		// Planning as the wrong release would undo or skip steps: refuse before anything runs.
		fmt.Fprintf(os.Stderr, "emrkit: %s\n", err)
		os.Exit(cmdutil.ExitError)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	f := &cmdutil.Factory{Version: build.Version, Dev: build.Dev, In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Host: plan.DefaultHost(),
		Interactive: func() bool { return term.IsTerminal(int(os.Stdin.Fd())) },
		Colour:      func() bool { return term.IsTerminal(int(os.Stdout.Fd())) && os.Getenv("NO_COLOR") == "" }}
	cmd := root.New(f)
	err = cmd.ExecuteContext(ctx)
	stop()
	code := cmdutil.ExitCode(err)
	if err != nil && err.Error() != "" {
		// cobra's own argument errors are usage errors too.
		if code == cmdutil.ExitError && isCobraUsage(err) {
			code = cmdutil.ExitUsage
		}
		// One bounded line, whatever a database server put in it (patients' values withheld).
		fmt.Fprintf(os.Stderr, "emrkit: %s\n", redact.Error(err))
	}
	os.Exit(code)
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "unknown flag", "unknown shorthand"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
