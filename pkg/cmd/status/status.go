// Package status is `emrkit status`: every journal entry, and whether the host still holds it.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/step"
)

type Options struct {
	F    *cmdutil.Factory
	JSON bool
}

func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what emrkit changed and whether the host still holds it",
		Long: "Status lists each journal entry with its state and whether the host still matches it,\n" +
			"plus planned steps not applied yet. Exit 3 when anything needs attention: drift, a deferred\n" +
			"or interrupted step, or a step not applied.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return Run(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "machine-readable output")
	return cmd
}

// Row is one line of status, also its JSON form.
type Row struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Target  string    `json:"target"`
	Since   string    `json:"since"`
	State   string    `json:"state"`
	Host    string    `json:"host,omitempty"`
	Note    string    `json:"note,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
	// OK is false for rows that need attention.
	OK bool `json:"ok"`
}

// Rows computes status; it reads the journal without taking its lock.
func Rows(ctx context.Context, f *cmdutil.Factory, cfg config.Config) ([]Row, error) {
	entries, err := journal.Read(cfg.Paths.StateDir)
	if err != nil {
		return nil, err
	}
	p, err := plan.New(cfg, f.Host, f.Version)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var rows []Row
	journaled := map[string]bool{}
	for _, r := range step.Inspect(ctx, entries, p.Undoers) {
		journaled[r.ID] = true
		ok := r.State == journal.Undone || (r.State == journal.Done && r.Host == "matches")
		rows = append(rows, Row{ID: r.ID, Kind: r.Kind, Target: r.Target, Since: r.Since, State: string(r.State),
			Host: r.Host, Note: r.Note, Updated: r.Updated, OK: ok})
	}
	for _, s := range p.Steps {
		if journaled[s.ID()] {
			continue
		}
		inSync, err := s.Check(ctx)
		row := Row{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), Since: s.Since(), State: "not applied"}
		switch d, deferred := step.IsDeferred(err); {
		case deferred:
			row.State, row.Note = string(journal.Deferred), d.Reason
		case err != nil:
			row.Host = "error: " + err.Error()
		case inSync:
			continue // already so on the host, not emrkit's doing: nothing to show or undo
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func Run(ctx context.Context, o *Options, cfg config.Config) error {
	rows, err := Rows(ctx, o.F, cfg)
	if err != nil {
		return err
	}
	problems := 0
	for _, r := range rows {
		if !r.OK {
			problems++
		}
	}
	if o.JSON {
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(o.F.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(o.F.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STATE\tHOST\tSINCE\tCHANGE\tNOTE")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.State, dash(r.Host), r.Since, r.ID, r.Note)
		}
		tw.Flush()
		if problems == 0 {
			fmt.Fprintf(o.F.Out, "ok: %d entries, host matches the journal\n", len(rows))
		} else {
			fmt.Fprintf(o.F.Out, "%d of %d entries need attention (run `emrkit apply` to converge)\n", problems, len(rows))
		}
	}
	if problems > 0 {
		return cmdutil.Problem()
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
