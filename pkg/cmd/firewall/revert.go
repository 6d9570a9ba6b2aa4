package firewall

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/config"
	fw "github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

func newRevert(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revert",
		Short: "Undo emrkit's firewall changes",
		Long: "Revert deletes exactly the rules emrkit added (never an admin's rule, even for the same port),\n" +
			"restores the default policies and, if emrkit enabled ufw, disables it again; each only while\n" +
			"the host still holds what emrkit set. --dry-run prints the ufw commands it would run.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.F.Config()
			if err != nil {
				return err
			}
			_, err = Revert(cmd.Context(), o, cfg)
			return err
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the ufw commands that would run, change nothing")
	return cmd
}

// Revert undoes every firewall entry in the journal, newest first.
func Revert(ctx context.Context, o *Options, cfg config.Config) (step.Report, error) {
	j, err := journal.OpenRun(cfg.Paths.StateDir, o.DryRun)
	if err != nil {
		return step.Report{}, err
	}
	defer j.Close()
	store := firewallOnly{j}
	if o.DryRun {
		printUndoCommands(o, store.Entries())
	}
	r := &step.Runner{Journal: store, Undoers: fw.Undoers(o.Env), Out: o.F.Out, DryRun: o.DryRun}
	rep, err := r.Revert(ctx, isFirewall)
	if err != nil {
		return rep, fmt.Errorf("firewall revert stopped: %w", err)
	}
	verb := "undone"
	if o.DryRun {
		verb = "would undo"
	}
	fmt.Fprintf(o.F.Out, "firewall: %s %d, kept %d (changed since emrkit set them), skipped %d\n", verb, rep.Undone, rep.Kept, rep.Skipped)
	return rep, nil
}

// printUndoCommands lists, newest first, what undoing each live entry would run while the
// host still holds what emrkit set.
func printUndoCommands(o *Options, entries []journal.Entry) {
	fmt.Fprintln(o.F.Out, "commands revert would run (each only if the host still holds emrkit's setting):")
	for _, e := range slices.Backward(entries) {
		if e.State != journal.Done && e.State != journal.Pending {
			continue
		}
		cmds, err := fw.UndoCommands(e)
		if err != nil {
			fmt.Fprintf(o.F.Out, "  # %s: %v\n", e.ID, err)
			continue
		}
		for _, c := range cmds {
			fmt.Fprintf(o.F.Out, "  %s\n", c)
		}
	}
}
