// Package pgp is `emrkit pgp setup | selftest | decrypt` — OSCAR's encrypted patient exports
// — and the hidden `emrkit oscar-encrypt` that OSCAR itself runs in symmetric mode.
package pgp

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
)

// Options are a pgp subcommand's inputs.
type Options struct {
	F *cmdutil.Factory
	// Env is the host as package pgp sees it; Properties is filled from the configuration
	// when empty. Tests point it at a stand-in Tomcat user and private paths.
	Env pgp.Env
	// TempDir is where the self-test makes its export directory ("" = the system's).
	TempDir string
}

// New returns the `pgp` command for the real host.
func New(f *cmdutil.Factory) *cobra.Command { return NewWith(f, pgp.DefaultEnv()) }

// NewWith returns the `pgp` command working on env.
func NewWith(f *cmdutil.Factory, env pgp.Env) *cobra.Command {
	o := &Options{F: f, Env: env}
	cmd := &cobra.Command{
		Use:   "pgp",
		Short: "Encrypted OSCAR patient exports: set up, prove, decrypt",
		Long: "OSCAR encrypts a Demographic Export by running PGP_BIN PGP_CMD FILE PGP_KEY with only PGP_ENV\n" +
			"in its environment, as the Tomcat user. setup configures that for pgp.mode (public-key,\n" +
			"generate, symmetric), selftest replays the call exactly, decrypt opens an export.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSetup(o), newSelftest(o), newDecrypt(o))
	return cmd
}

// env completes o.Env from the configuration: oscar.properties as the plan finds it.
func (o *Options) env(cfg config.Config) pgp.Env {
	env := o.Env
	if env.Properties == "" {
		env.Properties, _ = plan.PropertiesPath(cfg, o.F.Host)
	}
	return env
}

// SetupOptions are `pgp setup`'s inputs.
type SetupOptions struct {
	*Options
	DryRun bool
}

func newSetup(o *Options) *cobra.Command {
	so := &SetupOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Set up encrypted exports for pgp.mode (the PGP steps of `emrkit apply` alone)",
		Long: "Setup creates Tomcat's GnuPG home if missing, imports or generates the export key (or the\n" +
			"symmetric passphrase) and sets PGP_BIN, PGP_CMD, PGP_KEY, PGP_ENV and\n" +
			"demographic.export.encryptedOnly=true in oscar.properties, journaling every change for undo.\n" +
			"Other journal entries are left alone. Run `emrkit pgp selftest` afterwards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.F.Config()
			if err != nil {
				return err
			}
			rep, err := RunSetup(cmd.Context(), so, cfg)
			if err != nil {
				return err
			}
			if rep.Deferred > 0 {
				return cmdutil.Problem()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&so.DryRun, "dry-run", false, "print what would change, change nothing")
	return cmd
}

// RunSetup converges the host on the PGP steps of cfg. A step no longer planned (the mode
// changed, or is none) is undone; no other journal entry is seen or touched.
func RunSetup(ctx context.Context, o *SetupOptions, cfg config.Config) (step.Report, error) {
	env := o.env(cfg)
	steps, err := pgp.Steps(cfg, env, pgp.Since)
	if err != nil {
		return step.Report{}, err
	}
	if len(steps) == 0 {
		fmt.Fprintln(o.F.Out, "pgp.mode is none: undoing emrkit's PGP setup, if any")
	}
	j, err := journal.OpenRun(cfg.Paths.StateDir, o.DryRun)
	if err != nil {
		return step.Report{}, err
	}
	defer j.Close()
	undoers := pgp.Undoers(env)
	undoers[props.Kind] = props.Undoer{}
	r := &step.Runner{Journal: pgpOnly{j}, Undoers: undoers, Out: o.F.Out, DryRun: o.DryRun}
	rep, err := r.Apply(ctx, steps)
	switch {
	case err != nil && strings.HasSuffix(err.Error(), "(nothing was changed)"):
		return rep, fmt.Errorf("pgp setup: %w", err)
	case err != nil:
		return rep, fmt.Errorf("pgp setup stopped: %w (the journal records what was done; fix this and run `emrkit pgp setup` again)", err)
	}
	switch {
	case o.DryRun:
		fmt.Fprintf(o.F.Out, "dry run: %d to apply, %d to undo; nothing was changed\n", rep.Applied+rep.Finished, rep.Undone)
	case !rep.Changed() && rep.Deferred == 0:
		fmt.Fprintf(o.F.Out, "nothing to change: exports are set up for pgp.mode %s (%d steps in place)\n", cfg.PGP.Mode, rep.Unchanged)
	default:
		fmt.Fprintf(o.F.Out, "pgp: applied %d, finished %d, undone %d, unchanged %d\n", rep.Applied, rep.Finished, rep.Undone, rep.Unchanged)
	}
	if rep.Deferred > 0 {
		fmt.Fprintln(o.F.Err, "NOTE: part of the PGP setup was deferred (see above); `emrkit pgp setup` finishes it once OSCAR is installed")
	}
	if n := pgp.Notice(cfg, env); n != "" && !o.DryRun {
		fmt.Fprintln(o.F.Err, "IMPORTANT: "+n)
	}
	if len(steps) > 0 && !o.DryRun && rep.Deferred == 0 {
		fmt.Fprintln(o.F.Out, "next: `emrkit pgp selftest` proves that OSCAR's exports encrypt")
	}
	return rep, nil
}

// pgpProps are the oscar.properties keys the PGP steps own.
func pgpProps() []string {
	return []string{pgp.PropBin, pgp.PropCmd, pgp.PropKey, pgp.PropEnv, pgp.PropEncryptedOnly}
}

// IsPGP selects the PGP steps' journal entries: the pgp.* kinds and the five properties.
func IsPGP(e journal.Entry) bool {
	if strings.HasPrefix(e.Kind, "pgp.") {
		return true
	}
	if e.Kind != props.Kind {
		return false
	}
	i := strings.LastIndexByte(e.Target, '#')
	return i >= 0 && slices.Contains(pgpProps(), e.Target[i+1:])
}

// pgpOnly is the journal as a runner working on the PGP steps alone must see it: other
// entries are invisible, so they are neither reverted as "no longer planned" nor touched.
type pgpOnly struct{ step.Store }

func (s pgpOnly) Entries() []journal.Entry {
	var out []journal.Entry
	for _, e := range s.Store.Entries() {
		if IsPGP(e) {
			out = append(out, e)
		}
	}
	return out
}
