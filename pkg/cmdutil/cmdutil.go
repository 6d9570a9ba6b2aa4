// Package cmdutil owns what every emrkit command shares: the streams it writes to, where the
// configuration comes from, and how an error becomes an exit code (design section 7).
package cmdutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/step"
)

// Exit codes of the command-line contract.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitUsage   = 2
	ExitProblem = 3 // a check found a problem: drift, a deferred step, a failed self-test
)

// Factory carries a command's dependencies, so commands run in tests without a terminal.
type Factory struct {
	// Version is the Debian version this binary plans and journals as (release.Build).
	Version string
	// Dev marks a development build (go build, go install): Version is then the newest
	// release of the source tree it was built from.
	Dev bool
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// Interactive reports whether a person answers on In (a terminal); nil means no.
	Interactive func() bool
	// Colour reports whether Out is a terminal that shows colours; nil means no.
	Colour func() bool
	// ConfigPath is the --config flag; ConfigSet says it was given explicitly.
	ConfigPath string
	ConfigSet  bool
	Host       plan.Host
}

// Config loads and validates the configuration.
func (f *Factory) Config() (config.Config, error) {
	return config.Load(f.ConfigPath, f.ConfigSet)
}

// WithConfig is a command's RunE that loads the configuration first and hands it to run.
func (f *Factory) WithConfig(run func(cmd *cobra.Command, args []string, cfg config.Config) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cfg, err := f.Config()
		if err != nil {
			return err
		}
		return run(cmd, args, cfg)
	}
}

// Confirm asks a yes/no question on a terminal. yes (--yes) answers it in advance; without a
// terminal and without --yes it refuses rather than wait for an answer that cannot come.
func (f *Factory) Confirm(question string, yes bool) error {
	if yes {
		return nil
	}
	if f.Interactive == nil || !f.Interactive() {
		return fmt.Errorf("%s: no terminal to confirm on; add --yes to go ahead", question)
	}
	fmt.Fprintf(f.Err, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(f.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("%s: not confirmed; nothing changed", question)
	}
	return nil
}

// ExitErr carries an exit code other than 1, with an optional message.
type ExitErr struct {
	Code int
	Err  error // nil: the command already said everything
}

func (e *ExitErr) Error() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

func (e *ExitErr) Unwrap() error { return e.Err }

// Problem is the exit-3 result: the command ran, and what it checked is not right.
func Problem() error { return &ExitErr{Code: ExitProblem} }

// Usage wraps a usage error (exit 2).
func Usage(err error) error { return &ExitErr{Code: ExitUsage, Err: err} }

// ExitCode maps an error from a command to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *ExitErr
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitError
}

// Session is what apply and revert work with: the plan of this release for a configuration,
// and a runner over the journal (locked, or for a dry run a snapshot). Close releases both.
type Session struct {
	Plan   *plan.Plan
	Runner *step.Runner
	j      journal.Handle
}

// Open builds the plan for cfg and locks the journal in its state dir. A dry run reads the
// journal without the lock and keeps nothing, so it creates no file on a host emrkit has not
// touched (no state dir, no lock, no kept ufw answers).
func (f *Factory) Open(cfg config.Config, dryRun bool) (*Session, error) {
	h := f.Host
	if !dryRun {
		// A converging run keeps ufw's answers for the next one (a no-op configure starts no ufw).
		h.Firewall = h.Firewall.KeepReads(filepath.Join(cfg.Paths.StateDir, firewall.ReadsFile))
	}
	p, err := plan.New(cfg, h, f.Version)
	if err != nil {
		return nil, err
	}
	j, err := journal.OpenRun(cfg.Paths.StateDir, dryRun)
	if err != nil {
		p.Close()
		return nil, err
	}
	return &Session{Plan: p, j: j, Runner: &step.Runner{Journal: j, Undoers: p.Undoers, Out: f.Out, DryRun: dryRun}}, nil
}

// Close releases the journal's lock and the plan's database connection.
func (s *Session) Close() {
	s.j.Close()
	s.Plan.Close()
}
