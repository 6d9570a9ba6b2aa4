package migrate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/progress"
	"github.com/emrkit/emrkit/pkg/step"
)

// Opener gives the EMR database, opening it on first use. *twofa.DB satisfies it (a server
// that is not there defers the plan's steps); Static wraps a connection a command opened.
type Opener interface {
	Get(ctx context.Context) (*sql.DB, error)
}

// Static is an Opener for an already open database.
func Static(db *sql.DB) Opener { return static{db} }

type static struct{ db *sql.DB }

func (s static) Get(context.Context) (*sql.DB, error) { return s.db, nil }

// Env is what migration steps and undoers work with.
type Env struct {
	DB Opener
	// Database is config database.name: the journal target is "<Database>.demographic".
	Database string
	// Progress receives progress lines and reports (nil: discarded); Interactive selects the
	// in-place terminal style.
	Progress    io.Writer
	Interactive bool
	// BatchSize is the rows per transaction (0: DefaultBatchSize).
	BatchSize int
	// Workers is how many connections up and down run batches on at once (0: DefaultWorkers).
	Workers int
	// Backup dumps the tables an undo is about to change; undo refuses to run without it.
	Backup BackupFunc

	afterBatch  func() // tests: runs in each batch's transaction, before the commit
	beforeApply func() // tests: runs between up's record and write
}

func (env Env) out() io.Writer {
	if env.Progress == nil {
		return io.Discard
	}
	return env.Progress
}

// engine opens one connection for a run: the session settings and transactions need it.
func (env Env) engine(ctx context.Context, m Migration) (*engine, func(), error) {
	db, err := env.DB.Get(ctx)
	if err != nil {
		return nil, nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", env.Database, err)
	}
	batch := env.BatchSize
	if batch <= 0 {
		batch = DefaultBatchSize
	}
	workers := env.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	e := &engine{m: m, db: db, conn: conn, database: env.Database, batch: batch, workers: workers, out: env.out(), afterBatch: env.afterBatch, beforeApply: env.beforeApply,
		meter: func(label string, total int64) *progress.Meter {
			return progress.NewMeter(env.out(), env.Interactive, label, progress.Rows, total)
		}}
	return e, func() { conn.Close() }, nil
}

// desired is what a migration's journal entry records: enough for any emrkit release to find
// the undo data.
type desired struct {
	Migration string   `json:"migration"`
	Database  string   `json:"database"`
	Table     string   `json:"table"`
	Key       string   `json:"key"`
	Columns   []string `json:"columns"`
	UndoTable string   `json:"undo_table"`
	Progress  string   `json:"progress_table"`
}

// Step runs one migration, journaled. Build it with Steps or NewStep.
type Step struct {
	env   Env
	m     Migration
	since string
}

// NewStep returns the step running migration name.
func NewStep(env Env, name, since string) (Step, error) {
	m, err := Lookup(name)
	if err != nil {
		return Step{}, err
	}
	if err := m.validate(); err != nil {
		return Step{}, err
	}
	return Step{env: env, m: m, since: since}, nil
}

// Steps returns one step per name, in catalogue order whatever the order of names (each
// migration reads only its own columns, but a fixed order keeps runs reproducible). An
// unknown name is an error.
func Steps(env Env, names []string, since string) ([]step.Step, error) {
	want := map[string]bool{}
	for _, n := range names {
		if _, err := Lookup(n); err != nil {
			return nil, err
		}
		want[n] = true
	}
	var out []step.Step
	for _, m := range catalogue {
		if !want[m.Name] {
			continue
		}
		s, err := NewStep(env, m.Name, since)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (s Step) Kind() string   { return s.m.Kind() }
func (s Step) Target() string { return s.env.Database + "." + s.m.Table }
func (s Step) ID() string     { return s.Kind() + ":" + s.Target() }
func (s Step) Since() string  { return s.since }
func (s Step) Describe() string {
	return fmt.Sprintf("data migration %s on %s", s.m.Name, s.Target())
}

// Migration is the migration s runs.
func (s Step) Migration() Migration { return s.m }

// Preflight checks the database has the table and columns the migration needs.
func (s Step) Preflight(ctx context.Context) error {
	db, err := s.env.DB.Get(ctx)
	if err != nil {
		return err
	}
	return checkSchema(ctx, db, s.m, s.env.Database)
}

// Check reports whether the migration is done (its progress row says so).
func (s Step) Check(ctx context.Context) (bool, error) {
	db, err := s.env.DB.Get(ctx)
	if err != nil {
		return false, err
	}
	st, ok, err := ReadState(ctx, db, s.m.Name)
	return ok && st.State == stateDone, err
}

func (s Step) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	if _, err := s.env.DB.Get(ctx); err != nil {
		return nil, nil, err
	}
	var cols []string
	for _, c := range s.m.Columns {
		cols = append(cols, c.Name)
	}
	d, err := json.Marshal(desired{Migration: s.m.Name, Database: s.env.Database, Table: s.m.Table, Key: s.m.Key,
		Columns: cols, UndoTable: s.m.UndoTable(), Progress: ProgressTable})
	return d, json.RawMessage(`{}`), err
}

// Apply runs the migration, or resumes it after the last committed batch.
func (s Step) Apply(ctx context.Context, raw json.RawMessage) error {
	var d desired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("journal entry %s: %w", s.ID(), err)
	}
	if d.UndoTable != s.m.UndoTable() {
		return fmt.Errorf("journal entry %s records undo table %q, this emrkit uses %q; undo it with the release that made it first", s.ID(), d.UndoTable, s.m.UndoTable())
	}
	e, done, err := s.env.engine(ctx, s.m)
	if err != nil {
		return err
	}
	defer done()
	r, err := e.up(ctx)
	if err != nil {
		return err
	}
	if !r.Already {
		report(s.env.out(), s.m.Name, r)
	}
	return nil
}

func report(w io.Writer, name string, r Result) {
	fmt.Fprintf(w, "%s: changed %s rows; every change is recorded for `emrkit migrate down %s`\n", name, progress.Group(r.Changed), name)
	for _, line := range r.Report {
		fmt.Fprintf(w, "%s: %s\n", name, line)
	}
}

// Preview counts the rows up would change now, without changing anything.
func Preview(ctx context.Context, db *sql.DB, database, name string) (int64, error) {
	m, err := Lookup(name)
	if err != nil {
		return 0, err
	}
	if err := checkSchema(ctx, db, m, database); err != nil {
		return 0, err
	}
	var n int64
	if err := db.QueryRowContext(ctx, m.sqlPreview()).Scan(&n); err != nil {
		return 0, fmt.Errorf("preview %s: %w", name, err)
	}
	return n, nil
}

// Undoers returns the undoer of every migration's kind.
func Undoers(env Env) step.Registry {
	r := step.Registry{}
	for _, m := range catalogue {
		r[m.Kind()] = Undoer{env: env}
	}
	return r
}

// Undoer reverses migration entries (see "Down is compare-and-swap" in the package doc).
type Undoer struct{ env Env }

// NewUndoer returns the undoer for every migration kind.
func NewUndoer(env Env) Undoer { return Undoer{env: env} }

func (u Undoer) entry(e journal.Entry) (Migration, desired, error) {
	m, ok := byKind(e.Kind)
	if !ok {
		return Migration{}, desired{}, fmt.Errorf("journal entry %s: %w %q", e.ID, step.ErrUnknownKind, e.Kind)
	}
	var d desired
	if err := json.Unmarshal(e.Desired, &d); err != nil {
		return Migration{}, desired{}, fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	if d.UndoTable == "" {
		d.UndoTable = m.UndoTable()
	}
	if err := mariadb.ValidIdentifier(d.UndoTable); err != nil || !strings.HasPrefix(d.UndoTable, "emrkit_undo_") {
		return Migration{}, desired{}, fmt.Errorf("journal entry %s: undo table %q is not one of emrkit's", e.ID, d.UndoTable)
	}
	return m, d, nil
}

// Undo backs up, then restores every row the migration changed that still holds what it
// wrote; rows edited since are kept and reported (Kept). A database that cannot be reached is
// Skipped (purge after MariaDB was removed).
func (u Undoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	m, d, err := u.entry(e)
	if err != nil {
		return 0, "", err
	}
	if _, err := u.env.DB.Get(ctx); err != nil {
		var deferred *step.DeferredError
		if errors.As(err, &deferred) {
			return step.Skipped, "database not reachable: " + deferred.Reason, nil
		}
		return 0, "", err
	}
	eng, done, err := u.env.engine(ctx, m)
	if err != nil {
		return 0, "", err
	}
	defer done()
	r, err := eng.down(ctx, d.UndoTable, u.env.Backup)
	if err != nil {
		return 0, "", err
	}
	return DownOutcome(r)
}

// DownOutcome words a down's result as the runner reports it.
func DownOutcome(r DownResult) (step.Outcome, string, error) {
	switch {
	case r.Gone != "":
		return step.Skipped, r.Gone, nil
	case r.Kept > 0:
		keys := make([]string, len(r.KeptKeys))
		for i, k := range r.KeptKeys {
			keys[i] = fmt.Sprint(k)
		}
		more := ""
		if r.Kept > int64(len(keys)) {
			more = ", ..."
		}
		return step.Kept, fmt.Sprintf("restored %s rows; kept %s rows edited or deleted since the migration (demographic_no %s%s); backup in %s",
			progress.Group(r.Restored), progress.Group(r.Kept), strings.Join(keys, ", "), more, r.Backup), nil
	case r.Already:
		return step.AlreadyBefore, "", nil
	default:
		return step.Restored, fmt.Sprintf("restored %s rows; backup in %s", progress.Group(r.Restored), r.Backup), nil
	}
}

// Holds reports whether the migration is done and its undo data is there. Rows edited since
// are found (and kept) by Undo; checking every row here would scan the table on each status.
func (u Undoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	m, d, err := u.entry(e)
	if err != nil {
		return false, err
	}
	db, err := u.env.DB.Get(ctx)
	if err != nil {
		return false, err
	}
	st, ok, err := ReadState(ctx, db, m.Name)
	if err != nil || !ok || st.State != stateDone {
		return false, err
	}
	return tableExists(ctx, db, d.UndoTable)
}
