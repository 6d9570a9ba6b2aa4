// Package migrate is `emrkit migrate list | up NAME | down NAME`: OSCAR's 15 -> 19 data
// migrations, run by hand. The same migrations run from the plan when named in
// config.Migrations (debconf emrkit/migrations); see package pkg/migrate for who owns which.
package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/migrate"
	"github.com/emrkit/emrkit/pkg/progress"
	"github.com/emrkit/emrkit/pkg/step"
)

// New returns the `migrate` command.
func New(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "OSCAR 15 -> 19 data migrations: list, run, undo",
		Long: "Data migrations rewrite rows of OSCAR's demographic table the way OSCAR's upgrade notes say,\n" +
			"without their data loss, in short batches that a crash or Ctrl-C can interrupt safely (run up\n" +
			"again to continue). Every changed row is recorded in the database, so `down` restores exactly\n" +
			"those rows — except rows edited since, which it keeps and reports. down backs up first.\n\n" +
			"Migrations: " + strings.Join(migrate.Names(), ", ") + ".",
	}
	cmd.AddCommand(newList(f), newUp(f), newDown(f))
	return cmd
}

// Options are the inputs of `migrate up` and `migrate down`.
type Options struct {
	F      *cmdutil.Factory
	Name   string
	DryRun bool
	// BatchSize is rows per transaction (--batch, 1..MaxBatch).
	BatchSize int
	// Workers is how many connections up or down runs batches on at once (--workers,
	// 1..MaxWorkers).
	Workers int
}

// The ranges --batch and --workers accept. A batch larger than MaxBatch holds its
// transaction, and the rows it locks, for minutes; more than MaxWorkers connections only
// contend for the same table.
const (
	MaxBatch   = 1000000
	MaxWorkers = 16
)

func newUp(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "up NAME",
		Short: "Run (or continue) data migration NAME",
		Args:  cobra.ExactArgs(1),
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			o.Name = args[0]
			return RunUp(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "count the rows it would change; change nothing")
	batchFlags(cmd, o)
	return cmd
}

// batchFlags are --batch and --workers, with their real defaults (so --help shows them).
func batchFlags(cmd *cobra.Command, o *Options) {
	o.BatchSize, o.Workers = migrate.DefaultBatchSize, migrate.DefaultWorkers
	cmd.Flags().Var(&cmdutil.IntRange{P: &o.BatchSize, Min: 1, Max: MaxBatch, What: "rows per transaction"}, "batch",
		fmt.Sprintf("rows per transaction, 1..%d", MaxBatch))
	cmd.Flags().Var(&cmdutil.IntRange{P: &o.Workers, Min: 1, Max: MaxWorkers, What: "connections at once"}, "workers",
		fmt.Sprintf("connections running batches at once, each on its own key range, 1..%d", MaxWorkers))
}

func newDown(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "down NAME",
		Short: "Undo data migration NAME: back up, then restore the rows it changed that nobody edited since",
		Args:  cobra.ExactArgs(1),
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			o.Name = args[0]
			return RunDown(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "say what would be undone; change nothing")
	batchFlags(cmd, o)
	return cmd
}

// check validates the name (usage error) and the profile.
func check(o *Options, cfg config.Config) (migrate.Migration, error) {
	m, err := migrate.Lookup(o.Name)
	if err != nil {
		return m, cmdutil.Usage(err)
	}
	if cfg.Profile != "oscar" {
		return m, fmt.Errorf("data migrations are OSCAR's; profile is %s", cfg.Profile)
	}
	return m, nil
}

// env is the migration environment of a command: an open connection (a command run by hand
// does not defer), progress on stderr, and backups in paths.backup_dir.
func env(o *Options, cfg config.Config, db migrate.Opener) migrate.Env {
	return migrate.Env{
		DB: db, Database: cfg.Database.Name, Progress: o.F.Err, Interactive: progress.IsTerminal(o.F.Err),
		BatchSize: o.BatchSize, Workers: o.Workers, Backup: backup.Before(cfg),
	}
}

// open checks o and connects: the migration, the open database (the caller closes it), the
// migration environment and its journaled step.
func open(ctx context.Context, o *Options, cfg config.Config) (migrate.Migration, *sql.DB, migrate.Env, migrate.Step, error) {
	m, err := check(o, cfg)
	if err != nil {
		return m, nil, migrate.Env{}, migrate.Step{}, err
	}
	db, err := mariadb.Open(ctx, cfg.Database)
	if err != nil {
		return m, nil, migrate.Env{}, migrate.Step{}, err
	}
	e := env(o, cfg, migrate.Static(db))
	s, err := migrate.NewStep(e, m.Name, migrate.Since)
	if err != nil {
		db.Close()
		return m, nil, e, s, err
	}
	return m, db, e, s, nil
}

// RunUp runs migration o.Name, journaled as the admin's own (origin "command": `emrkit apply`
// leaves it alone unless it is also in config.Migrations).
func RunUp(ctx context.Context, o *Options, cfg config.Config) error {
	m, db, e, s, err := open(ctx, o, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := s.Preflight(ctx); err != nil {
		return err
	}
	if o.DryRun {
		st, _, err := migrate.ReadState(ctx, db, m.Name)
		if err != nil {
			return err
		}
		if st.State == "done" {
			fmt.Fprintf(o.F.Out, "%s is already done on %s (%s rows changed); nothing to do\n", m.Name, s.Target(), progress.Group(st.Changed))
			return nil
		}
		n, err := migrate.Preview(ctx, db, cfg.Database.Name, m.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.F.Out, "%s would change %s rows of %s (dry run: nothing changed)\n", m.Name, progress.Group(n), s.Target())
		return nil
	}
	j, err := journal.Open(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	defer j.Close()
	r := &step.Runner{Journal: j, Undoers: migrate.Undoers(e), Out: o.F.Err, Origin: journal.OriginCommand}
	rep, err := r.Run(ctx, []step.Step{s})
	if err != nil {
		return err
	}
	st, _, err := migrate.ReadState(ctx, db, m.Name)
	if err != nil {
		return err
	}
	if rep.Unchanged > 0 {
		fmt.Fprintf(o.F.Out, "%s was already done on %s (%s rows changed, %s UTC); `emrkit migrate down %s` undoes it\n",
			m.Name, s.Target(), progress.Group(st.Changed), st.Updated.Format("2006-01-02 15:04"), m.Name)
		return nil
	}
	fmt.Fprintf(o.F.Out, "%s is done on %s: %s rows changed\n", m.Name, s.Target(), progress.Group(st.Changed))
	return nil
}

// RunDown undoes migration o.Name's journal entry, whoever made it (the plan or a command).
func RunDown(ctx context.Context, o *Options, cfg config.Config) error {
	m, db, e, s, err := open(ctx, o, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	j, err := journal.Open(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	defer j.Close()
	entry, ok := j.Get(s.ID())
	if !ok || (entry.State != journal.Done && entry.State != journal.Pending) {
		st, inDB, err := migrate.ReadState(ctx, db, m.Name)
		if err != nil {
			return err
		}
		if inDB {
			return fmt.Errorf("%s is %s on %s, but the journal in %s has no record of it (run with another state directory?); run down with that configuration",
				m.Name, st.State, s.Target(), cfg.Paths.StateDir)
		}
		fmt.Fprintf(o.F.Out, "%s is not applied on %s; nothing to undo\n", m.Name, s.Target())
		return nil
	}
	r := &step.Runner{Journal: j, Undoers: migrate.Undoers(e), Out: o.F.Err, DryRun: o.DryRun}
	rep, err := r.Revert(ctx, func(x journal.Entry) bool { return x.ID == s.ID() })
	if err != nil {
		return err
	}
	switch {
	case o.DryRun:
		st, _, _ := migrate.ReadState(ctx, db, m.Name)
		fmt.Fprintf(o.F.Out, "%s would be undone on %s: %s rows recorded, each restored unless edited since (dry run: nothing changed)\n",
			m.Name, s.Target(), progress.Group(st.Changed))
	case rep.Kept > 0:
		fmt.Fprintf(o.F.Out, "%s is undone on %s, except rows edited since (kept; listed above)\n", m.Name, s.Target())
	default:
		fmt.Fprintf(o.F.Out, "%s is undone on %s\n", m.Name, s.Target())
	}
	if slices.Contains(cfg.Migrations, m.Name) && !o.DryRun {
		fmt.Fprintf(o.F.Err, "NOTE: %s is in migrations (debconf emrkit/migrations), so `emrkit apply` runs it again; remove it with `dpkg-reconfigure emrkit`\n", m.Name)
	}
	return nil
}

// ListOptions are `migrate list`'s inputs.
type ListOptions struct {
	F    *cmdutil.Factory
	JSON bool
}

func newList(f *cmdutil.Factory) *cobra.Command {
	o := &ListOptions{F: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the data migrations and where each stands on this database",
		Args:  cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return RunList(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "machine-readable output")
	return cmd
}

// Status is one migration as `migrate list` shows it.
type Status struct {
	Name     string `json:"name"`
	Summary  string `json:"summary"`
	InConfig bool   `json:"in_config"` // named in config.Migrations: apply runs it
	// State: "not run", "running" (interrupted: run up to continue), "done", "undoing"
	// (interrupted: run down to finish), or "unknown" when the database cannot be reached.
	State   string   `json:"state"`
	Changed int64    `json:"changed"`
	LastKey int64    `json:"last_key,omitempty"`
	Report  []string `json:"report,omitempty"`
	Journal string   `json:"journal"`          // the journal entry's state, "" for none
	Origin  string   `json:"origin,omitempty"` // "plan" or "command"
}

// RunList prints every migration's state from the database and the journal. A database that
// cannot be reached is an error, after what the journal alone says.
func RunList(ctx context.Context, o *ListOptions, cfg config.Config) error {
	entries, err := journal.Read(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	db, dbErr := mariadb.Open(ctx, cfg.Database)
	if dbErr == nil {
		defer db.Close()
	}
	var out []Status
	for _, m := range migrate.All() {
		st := Status{Name: m.Name, Summary: m.Summary, InConfig: slices.Contains(cfg.Migrations, m.Name), State: "not run"}
		for _, e := range entries {
			if e.Kind == m.Kind() && e.Target == cfg.Database.Name+"."+m.Table {
				st.Journal, st.Origin = string(e.State), e.Origin
				if st.Origin == "" {
					st.Origin = "plan"
				}
			}
		}
		if dbErr != nil {
			st.State = "unknown"
		} else {
			p, ok, err := migrate.ReadState(ctx, db, m.Name)
			if err != nil {
				return err
			}
			if ok {
				st.State, st.Changed, st.LastKey = p.State, p.Changed, p.LastKey
				if p.Report != "" {
					st.Report = strings.Split(p.Report, "\n")
				}
			}
		}
		out = append(out, st)
	}
	if o.JSON {
		enc := json.NewEncoder(o.F.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(o.F.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tJOURNAL\tIN CONFIG\tWHAT IT DOES")
		for _, s := range out {
			state := s.State
			switch s.State {
			case "done":
				state = "done, " + progress.Group(s.Changed) + " rows changed"
			case "running":
				state = fmt.Sprintf("interrupted after demographic_no %d: run up to continue", s.LastKey)
			case "undoing":
				state = fmt.Sprintf("undo interrupted after demographic_no %d: run down to finish", s.LastKey)
			}
			j := "-"
			if s.Journal != "" {
				j = s.Journal + " (" + s.Origin + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, state, j, yesNo(s.InConfig), s.Summary)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if dbErr != nil {
		return fmt.Errorf("%w; the states above come from the journal only", dbErr)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
