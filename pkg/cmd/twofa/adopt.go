package twofa

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/twofa"
)

type AdoptOptions struct {
	F       *cmdutil.Factory
	Journal string
	JSON    bool
}

func newAdopt(f *cmdutil.Factory) *cobra.Command {
	o := &AdoptOptions{F: f}
	cmd := &cobra.Command{
		Use:   "adopt --journal FILE",
		Short: "Take over the enrolments of the server a restored backup came from",
		Long: "After a disaster restore onto a new server, adopt reads the old server's journal (FILE, from\n" +
			"the disaster kit) and takes over each 2FA enrolment emrkit made there whose secret the restored\n" +
			"database still holds: the PIN cycle runs for those users again, and an undo gives back what\n" +
			"they had before emrkit. Nothing in the database changes.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return RunAdopt(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().StringVar(&o.Journal, "journal", "", "the old server's journal `FILE` (its /var/lib/emrkit/journal.json)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "machine-readable output")
	cmd.MarkFlagRequired("journal")
	return cmd
}

func RunAdopt(ctx context.Context, o *AdoptOptions, cfg config.Config) error {
	old, err := journal.ReadFile(o.Journal)
	if err != nil {
		return fmt.Errorf("2fa adopt: %w", err)
	}
	if len(twofa.Enrolled(old, cfg.Database.Name)) == 0 {
		// A clinic without 2FA (or an OpenEMR one) runs the same runbook: that is no failure.
		fmt.Fprintf(o.F.Err, "%s records no 2FA enrolment emrkit made in database %s: there is none to adopt\n", o.Journal, cfg.Database.Name)
		return nil
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	j, err := journal.Open(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	defer j.Close()
	res, err := twofa.Adopt(ctx, db, j, old)
	if err != nil {
		return fmt.Errorf("2fa adopt: %w", err)
	}
	if o.JSON {
		enc := json.NewEncoder(o.F.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(o.F.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tADOPTED\tWHY NOT")
	adopted := 0
	for _, a := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.User, yesNo(a.Adopted), a.Reason)
		if a.Adopted {
			adopted++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(o.F.Err, "adopted %d of %d enrolments; `emrkit 2fa sync-pins` (cron runs it each minute) cycles their PINs\n", adopted, len(res))
	return nil
}
