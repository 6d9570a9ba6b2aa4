package firewall

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	fw "github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

func newStatus(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show ufw's state and whether it still holds emrkit's firewall changes",
		Long: "Status prints `ufw status verbose`, then each firewall journal entry and whether the host\n" +
			"still matches it, plus firewall steps not applied yet. Exit 3 when anything needs attention.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.F.Config()
			if err != nil {
				return err
			}
			return Status(cmd.Context(), o, cfg)
		},
	}
}

// Status prints the firewall's state; it returns cmdutil.Problem when something needs
// attention (drift, a deferred or interrupted step, a step not applied, ufw unusable).
func Status(ctx context.Context, o *Options, cfg config.Config) error {
	problems := 0
	if out, err := o.Env.UFW.Run(ctx, "status", "verbose"); err != nil {
		fmt.Fprintf(o.F.Out, "ufw: %v\n", err)
		problems++
	} else {
		fmt.Fprintln(o.F.Out, strings.TrimRight(out, "\n"))
	}
	fmt.Fprintln(o.F.Out)

	entries, err := journal.Read(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(o.F.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tHOST\tCHANGE\tNOTE")
	journaled := map[string]bool{}
	rows := 0
	for _, r := range step.Inspect(ctx, filter(entries), fw.Undoers(o.Env)) {
		journaled[r.ID] = true
		rows++
		if !(r.State == journal.Undone || (r.State == journal.Done && r.Host == "matches")) {
			problems++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.State, dash(r.Host), r.ID, r.Note)
	}
	steps, err := fw.StepsContext(ctx, cfg.Firewall, cfg.Profile, o.Env, fw.Since)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if journaled[s.ID()] {
			continue
		}
		inSync, err := s.Check(ctx)
		state, host, note := "not applied", "-", ""
		switch d, deferred := step.IsDeferred(err); {
		case deferred:
			state, note = string(journal.Deferred), d.Reason
		case err != nil:
			host = "error: " + err.Error()
		case inSync:
			continue // already so on the host, not emrkit's doing
		}
		rows++
		problems++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", state, host, s.ID(), note)
	}
	tw.Flush()
	if problems == 0 {
		fmt.Fprintf(o.F.Out, "ok: %d firewall entries, host matches the journal\n", rows)
		return nil
	}
	fmt.Fprintf(o.F.Out, "%d firewall item(s) need attention (run `emrkit firewall apply` to converge)\n", problems)
	return cmdutil.Problem()
}

func filter(entries []journal.Entry) []journal.Entry {
	var out []journal.Entry
	for _, e := range entries {
		if isFirewall(e) {
			out = append(out, e)
		}
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
