package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/progress"
)

// This file holds up: the migration's key range walked (walk.go), each batch recording its
// undo rows, writing the new values and advancing its segment in one transaction.

// Result is what up did.
type Result struct {
	Changed int64    // rows changed, in all runs of this migration
	Report  []string // the notes, as sentences
	Already bool     // the migration was done before this call
}

// up runs (or resumes) m. Every committed batch is recorded in the undo table; on error,
// what was done stays done and recorded, and a re-run continues after it.
func (e *engine) up(ctx context.Context) (Result, error) {
	m, undo := e.m, e.m.UndoTable()
	if err := e.session(ctx); err != nil {
		return Result{}, err
	}
	if err := checkSchema(ctx, e.conn, m, e.database); err != nil {
		return Result{}, err
	}
	if _, err := e.conn.ExecContext(ctx, createProgress); err != nil {
		return Result{}, fmt.Errorf("create %s: %w", ProgressTable, err)
	}
	st, ok, err := ReadState(ctx, e.conn, m.Name)
	if err != nil {
		return Result{}, err
	}
	fresh := !ok
	switch {
	case ok && st.State == stateDone:
		return Result{Changed: st.Changed, Report: splitReport(st.Report), Already: true}, nil
	case ok && st.State == stateUndoing:
		return Result{}, fmt.Errorf("an interrupted `emrkit migrate down %s` left it half undone; run `emrkit migrate down %s` to finish, then up again", m.Name, m.Name)
	case !ok:
		// A crash between creating the undo table and recording progress leaves it empty;
		// anything in it without a progress row is not ours to overwrite.
		if exists, err := tableExists(ctx, e.conn, undo); err != nil {
			return Result{}, err
		} else if exists {
			if n, err := e.count(ctx, e.conn, undo, -1<<63); err != nil {
				return Result{}, err
			} else if n > 0 {
				return Result{}, fmt.Errorf("%s holds %d rows of undo data but %s has no record of migration %s; emrkit will not overwrite it (inspect it, then drop it)", undo, n, ProgressTable, m.Name)
			}
		}
		if _, err := e.conn.ExecContext(ctx, m.sqlCreateUndo(undo)); err != nil {
			return Result{}, fmt.Errorf("create undo table %s: %w", undo, err)
		}
		start, _, err := e.minKey(ctx, m.Table)
		if err != nil {
			return Result{}, err
		}
		// The migration covers the rows there are now: patients OSCAR 19 registers while it
		// runs were typed the new way and are left alone.
		high, err := e.maxKey(ctx, m.Table, start)
		if err != nil {
			return Result{}, err
		}
		if err := e.begin(ctx, start, high); err != nil {
			return Result{}, fmt.Errorf("record progress of %s: %w", m.Name, err)
		}
		st = State{Name: m.Name, State: stateRunning, UndoTable: undo, LastKey: start, HighKey: high}
	default:
		fmt.Fprintf(e.out, "%s: resuming after %s %d (%s rows changed so far)\n", m.Name, m.Key, st.LastKey, progress.Group(st.Changed))
	}
	segs, err := e.segments(ctx, st.LastKey, st.HighKey)
	if err != nil {
		return Result{}, err
	}

	// The total (for progress) and the notes each take a scan of the table; they run on
	// other connections while the batches go, which is why notes must count rows the
	// migration does not move in or out of them.
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	totalc := e.async(bg, func(ctx context.Context) (any, error) {
		if fresh {
			return e.countAll(ctx, m.Table)
		}
		return e.left(ctx, m.Table, segs)
	})
	notesc := e.async(bg, e.notes)
	meter := e.meter(m.Name, -1)
	if run, err := e.walkAll(ctx, m.Table, segs, e.upBatch(), meter, totalc); err != nil {
		return Result{}, e.batchErr(err, st.Changed+run.changed)
	}
	meter.Finish()
	nr := <-notesc
	if nr.err != nil {
		return Result{}, nr.err
	}
	report, _ := nr.v.([]string)
	changed, err := e.finishUp(ctx, strings.Join(report, "\n"))
	if err != nil {
		return Result{}, fmt.Errorf("record %s as done: %w", m.Name, err)
	}
	return Result{Changed: changed, Report: report}, nil
}

// begin records a fresh run in one transaction: the migration's row, and its segments.
func (e *engine) begin(ctx context.Context, start, high int64) error {
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, insertProgress, e.m.Name, 0, stateRunning, e.m.UndoTable(), start, high); err != nil {
		return err
	}
	if err := e.insertSegments(ctx, tx, start, high); err != nil {
		return err
	}
	return tx.Commit()
}

// upBatch records and writes the changes of one batch. The record is a plain read (the
// session runs READ COMMITTED); the write is compare-and-swap on the recorded old values, so
// a row another transaction changed in between is not written, the counts differ, and the
// batch rolls back to run again (errRaced is retried).
func (e *engine) upBatch() batchFunc {
	record, apply := e.m.sqlRecord(e.m.UndoTable()), e.m.sqlApply(e.m.UndoTable())
	return func(ctx context.Context, tx *sql.Tx, lo, hi int64, _ bool) (tally, error) {
		res, err := tx.ExecContext(ctx, record, lo, hi)
		if err != nil {
			return tally{}, err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return tally{}, err
		}
		if e.beforeApply != nil {
			e.beforeApply()
		}
		if res, err = tx.ExecContext(ctx, apply, lo, hi); err != nil {
			return tally{}, err
		}
		written, err := res.RowsAffected()
		if err != nil {
			return tally{}, err
		}
		if written != n {
			return tally{}, fmt.Errorf("%w: recorded %d rows, %d still held the recorded values", errRaced, n, written)
		}
		return tally{changed: n}, nil
	}
}

// finishUp marks the migration done in one transaction: the segments' counts move into its
// row and the segment rows go. It returns the rows changed in all runs.
func (e *engine) finishUp(ctx context.Context, report string) (int64, error) {
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var seg, own int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(SUM(`changed`), 0) FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0 FOR UPDATE", e.m.Name).Scan(&seg); err != nil {
		return 0, err
	}
	if err := tx.QueryRowContext(ctx, "SELECT `changed` FROM `"+ProgressTable+"`"+mainRow+" FOR UPDATE", e.m.Name).Scan(&own); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE `"+ProgressTable+"` SET `state` = ?, `changed` = ?, `last_key` = `high_key`, `report` = ?, `updated` = UTC_TIMESTAMP()"+mainRow,
		stateDone, own+seg, report, e.m.Name); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0", e.m.Name); err != nil {
		return 0, err
	}
	return own + seg, tx.Commit()
}

func (e *engine) batchErr(err error, changed int64) error {
	where, err := e.where(err)
	return fmt.Errorf("migration %s stopped at %s: %w; the %d rows changed before are recorded in %s: run `emrkit migrate up %s` to continue or `emrkit migrate down %s` to undo them",
		e.m.Name, where, err, changed, e.m.UndoTable(), e.m.Name, e.m.Name)
}

// notes counts m's notes over the whole table, on a connection of its own.
func (e *engine) notes(ctx context.Context) (any, error) {
	query := e.m.sqlNotes()
	if query == "" {
		return nil, nil
	}
	counts := make([]int64, len(e.m.Notes))
	dest := make([]any, len(counts))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := e.db.QueryRowContext(ctx, query).Scan(dest...); err != nil {
		return nil, fmt.Errorf("count what %s left alone: %w", e.m.Name, err)
	}
	var out []string
	for i, n := range e.m.Notes {
		if counts[i] > 0 {
			out = append(out, fmt.Sprintf(n.Say, progress.Group(counts[i])))
		}
	}
	return out, nil
}

func splitReport(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
