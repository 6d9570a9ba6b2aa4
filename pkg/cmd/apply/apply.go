// Package apply is `emrkit apply`: converge the host on the plan, journaling every change.
package apply

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/twofa"
)

type Options struct {
	F      *cmdutil.Factory
	DryRun bool
	// RestartMariaDB allows this run to restart MariaDB once, when the portal replica's
	// binary log is waiting for it.
	RestartMariaDB bool
}

func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply every configured step that the host does not hold yet",
		Long: "Apply converges the host on the configuration: each step checks first and changes only\n" +
			"what differs, recording the change and its undo data in the journal. Steps whose EMR is not\n" +
			"installed yet are deferred (exit 3) and finished by a later apply.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			rep, err := Run(cmd.Context(), o, cfg)
			if err != nil {
				return err
			}
			if rep.Deferred > 0 {
				return cmdutil.Problem()
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "show what would change, change nothing")
	cmd.Flags().BoolVar(&o.RestartMariaDB, "restart-mariadb", false, "restart MariaDB if the portal replica's binary log waits for it")
	return cmd
}

// Run applies the plan for cfg and prints a summary. Deferred steps are reported, not errors:
// callers decide (apply exits 3, postinst succeeds).
func Run(ctx context.Context, o *Options, cfg config.Config) (step.Report, error) {
	f := *o.F
	f.Host.Portal.Replica.RestartPrimary = o.RestartMariaDB
	s, err := f.Open(cfg, o.DryRun)
	if err != nil {
		return step.Report{}, err
	}
	defer s.Close()
	for _, w := range s.Plan.Warnings(ctx) {
		fmt.Fprintf(o.F.Err, "WARNING: %s (emrkit reports this and changes nothing)\n", w)
	}
	rep, err := s.Runner.Apply(ctx, s.Plan.Steps)
	if err != nil {
		return rep, fmt.Errorf("apply stopped: %w (the journal records what was done; fix this and run `emrkit apply` again)", err)
	}
	Summarize(o.F, rep, len(s.Plan.Steps), o.DryRun)
	if !o.DryRun {
		notices(o.F, cfg)
	}
	return rep, nil
}

// notices tells the admin about secrets emrkit left on the server for them to hand over.
func notices(f *cmdutil.Factory, cfg config.Config) {
	uris := filepath.Join(cfg.Paths.StateDir, twofa.URIFileName)
	if _, err := os.Stat(uris); err == nil {
		fmt.Fprintf(f.Err, "NOTE: two-factor enrolment links are in %s (root only): give each user theirs "+
			"(or re-issue one with `emrkit 2fa enroll USER --force`), then delete the file.\n", uris)
	}
	if n := pgp.Notice(cfg, f.Host.PGP); n != "" {
		fmt.Fprintf(f.Err, "NOTE: %s\n", n)
	}
}

// Summarize prints the one-line outcome of a run.
func Summarize(f *cmdutil.Factory, rep step.Report, planned int, dry bool) {
	switch {
	case !rep.Changed() && rep.Kept == 0 && rep.Deferred == 0:
		fmt.Fprintf(f.Out, "nothing to change: %d of %d steps already in place\n", rep.Unchanged, planned)
	case dry:
		fmt.Fprintf(f.Out, "dry run: %d to apply, %d to undo, %d unchanged; nothing was changed\n", rep.Applied+rep.Finished, rep.Undone, rep.Unchanged)
	default:
		kept := ""
		if rep.Kept > 0 { // undone except what was changed since emrkit wrote it (listed above)
			kept = fmt.Sprintf(", kept %d", rep.Kept)
		}
		fmt.Fprintf(f.Out, "applied %d, finished %d, undone %d%s, unchanged %d\n", rep.Applied, rep.Finished, rep.Undone, kept, rep.Unchanged)
	}
	if rep.Deferred > 0 {
		fmt.Fprintf(f.Err, "NOTE: %d step(s) deferred, each for the reason above (the EMR not installed yet, a restart to make, no systemd); `emrkit status` lists them, `emrkit apply` finishes them\n", rep.Deferred)
	}
}
