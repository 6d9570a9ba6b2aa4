package firewall

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	fw "github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

func newApply(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply the firewall steps the host does not hold yet",
		Long: "Apply adds emrkit's ufw rules (SSH first), sets the default policies and enables ufw last,\n" +
			"journaling each change. --dry-run prints the ufw commands it would run and changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.F.Config()
			if err != nil {
				return err
			}
			rep, err := Apply(cmd.Context(), o, cfg)
			if err != nil {
				return err
			}
			if rep.Deferred > 0 {
				return cmdutil.Problem()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the ufw commands that would run, change nothing")
	return cmd
}

// Apply converges the host on the firewall steps of cfg. With firewall.enable false it
// reverts what earlier runs did.
func Apply(ctx context.Context, o *Options, cfg config.Config) (step.Report, error) {
	env := o.Env
	if !o.DryRun { // a dry run keeps nothing, not even ufw's answers
		env = env.KeepReads(filepath.Join(cfg.Paths.StateDir, fw.ReadsFile))
	}
	steps, err := fw.StepsContext(ctx, cfg.Firewall, cfg.Profile, env, fw.Since)
	if err != nil {
		return step.Report{}, err
	}
	http, err := fw.HTTPSteps(ctx, cfg.Firewall, env, fw.HTTPSince)
	if err != nil {
		return step.Report{}, err
	}
	steps = append(steps, http...)
	if len(steps) == 0 {
		fmt.Fprintln(o.F.Out, "firewall.enable is false: reverting emrkit's firewall changes, if any")
	}
	j, err := journal.OpenRun(cfg.Paths.StateDir, o.DryRun)
	if err != nil {
		return step.Report{}, err
	}
	defer j.Close()
	r := &step.Runner{Journal: firewallOnly{j}, Undoers: fw.Undoers(env), Out: o.F.Out, DryRun: o.DryRun}
	rep, err := r.Apply(ctx, steps)
	if err != nil {
		return rep, fmt.Errorf("firewall apply stopped: %w (the journal records what was done; fix this and run `emrkit firewall apply` again)", err)
	}
	switch {
	case !rep.Changed() && rep.Deferred == 0:
		fmt.Fprintf(o.F.Out, "nothing to change: the firewall is as configured (%d steps in place)\n", rep.Unchanged)
	case o.DryRun:
		fmt.Fprintf(o.F.Out, "dry run: %d to apply, %d to undo; nothing was changed\n", rep.Applied+rep.Finished, rep.Undone)
	default:
		fmt.Fprintf(o.F.Out, "firewall: applied %d, finished %d, undone %d, unchanged %d\n", rep.Applied, rep.Finished, rep.Undone, rep.Unchanged)
	}
	if rep.Deferred > 0 {
		fmt.Fprintln(o.F.Err, "NOTE: the firewall was deferred (see above); `emrkit firewall apply` finishes it where it is safe")
	}
	return rep, nil
}
