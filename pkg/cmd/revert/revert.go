// Package revert is `emrkit revert`: undo journaled changes, newest first, compare-and-swap.
package revert

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/debversion"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

type Options struct {
	F         *cmdutil.Factory
	All       bool
	NewerThan string
	DryRun    bool
	// Unseal gives sealed entries their whole state back after the revert: the downgrade's
	// target predates step.SealedSince, and its undo needs it.
	Unseal bool
}

func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "revert (--all | --newer-than VERSION)",
		Short: "Undo emrkit's changes (all, or those of releases newer than VERSION)",
		Long: "Revert undoes journaled changes newest first. A value is restored only while the host\n" +
			"still holds what emrkit wrote; anything changed since by someone else is kept and reported.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.All == (o.NewerThan != "") {
				return cmdutil.Usage(errors.New("give exactly one of --all or --newer-than VERSION"))
			}
			if o.NewerThan != "" {
				if _, err := debversion.Parse(o.NewerThan); err != nil {
					return cmdutil.Usage(fmt.Errorf("--newer-than: %w", err))
				}
			}
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			_, err = Run(cmd.Context(), o, cfg)
			return err
		},
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "undo every change emrkit made")
	cmd.Flags().StringVar(&o.NewerThan, "newer-than", "", "undo changes introduced by releases newer than `VERSION` (Debian order)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "show what would be undone, change nothing")
	return cmd
}

// Match selects the entries a revert covers: all, or those whose since is newer than v.
func Match(all bool, v string) func(journal.Entry) bool {
	return func(e journal.Entry) bool {
		if all {
			return true
		}
		c, err := debversion.Compare(e.Since, v)
		// An entry with an unreadable version cannot be placed: treat it as newer, since
		// keeping a change an older release does not know is the riskier choice.
		return err != nil || c > 0
	}
}

func Run(ctx context.Context, o *Options, cfg config.Config) (step.Report, error) {
	s, err := o.F.Open(cfg, o.DryRun)
	if err != nil {
		return step.Report{}, err
	}
	defer s.Close()
	rep, err := s.Runner.Revert(ctx, Match(o.All, o.NewerThan))
	if err != nil {
		return rep, fmt.Errorf("revert stopped: %w", err)
	}
	if o.Unseal {
		n, left, err := s.Runner.Unseal(ctx)
		if err != nil {
			return rep, fmt.Errorf("unseal the journal for %s: %w", o.NewerThan, err)
		}
		if n > 0 {
			fmt.Fprintf(o.F.Out, "emrkit: %d entries unsealed for %s, whose undo needs them whole\n", n, o.NewerThan)
		}
		for _, l := range left {
			fmt.Fprintf(o.F.Err, "emrkit: warning: %s stays sealed, and %s keeps it on purge; if it is still emrkit's, undo it by hand (emrkit 2fa disable USER)\n", l, o.NewerThan)
		}
	}
	verb := "undone"
	if o.DryRun {
		verb = "would undo"
	}
	fmt.Fprintf(o.F.Out, "%s %d, kept %d (changed since emrkit wrote them), skipped %d\n", verb, rep.Undone, rep.Kept, rep.Skipped)
	return rep, nil
}
