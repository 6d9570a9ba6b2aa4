package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// This file holds up: the key range cut into segments walked on their own connections,
// batch by batch, each batch recording its undo rows and its progress in one transaction.

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
		start, err := e.minKey(ctx, m.Table)
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
		fmt.Fprintf(e.out, "%s: resuming after %s %d (%s rows changed so far)\n", m.Name, m.Key, st.LastKey, Group(st.Changed))
	}
	segs, err := e.segments(ctx, st)
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
		var left int64
		for _, sg := range segs {
			n, err := e.count(ctx, e.db, m.Table, sg.last, sg.high)
			if err != nil {
				return nil, err
			}
			left += n
		}
		return left, nil
	})
	notesc := e.async(bg, e.notes)
	meter := e.meter(m.Name, -1)
	if err := e.walkAll(ctx, segs, st.Changed, meter, totalc); err != nil {
		return Result{}, err
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

// segment is one worker's share of up's key range: keys in (last, high].
type segment struct {
	id         int
	last, high int64
}

// begin records a fresh run in one transaction: the migration's row, and one row per
// segment splitting (start, high] into equal key ranges, one per worker (fewer when the table
// is small).
func (e *engine) begin(ctx context.Context, start, high int64) error {
	n := int64(max(1, min(e.workers, int((high-start)/int64(e.batch)))))
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	insert := "INSERT INTO `" + ProgressTable + "` (`name`, `segment`, `state`, `undo_table`, `last_key`, `high_key`, `report`, `started`, `updated`) VALUES (?, ?, ?, ?, ?, ?, '', UTC_TIMESTAMP(), UTC_TIMESTAMP())"
	if _, err := tx.ExecContext(ctx, insert, e.m.Name, 0, stateRunning, e.m.UndoTable(), start, high); err != nil {
		return err
	}
	for i := int64(1); i <= n; i++ {
		lo, hi := start+(high-start)*(i-1)/n, start+(high-start)*i/n
		if _, err := tx.ExecContext(ctx, insert, e.m.Name, i, "segment", e.m.UndoTable(), lo, hi); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// segments returns the segments with keys left to do. A running migration without segment
// rows (its row was made by an interrupted down's bookkeeping) gets one for what is left.
func (e *engine) segments(ctx context.Context, st State) ([]segment, error) {
	rows, err := e.conn.QueryContext(ctx, "SELECT `segment`, `last_key`, `high_key` FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0 ORDER BY `segment`", e.m.Name)
	if err != nil {
		return nil, fmt.Errorf("read progress of %s: %w", e.m.Name, err)
	}
	defer rows.Close()
	var out []segment
	found := false
	for rows.Next() {
		var sg segment
		if err := rows.Scan(&sg.id, &sg.last, &sg.high); err != nil {
			return nil, err
		}
		if sg.last < sg.high {
			out = append(out, sg)
		}
		found = true
	}
	if err := rows.Err(); err != nil || found || st.LastKey >= st.HighKey {
		return out, err
	}
	sg := segment{id: 1, last: st.LastKey, high: st.HighKey}
	_, err = e.conn.ExecContext(ctx, "INSERT INTO `"+ProgressTable+"` (`name`, `segment`, `state`, `undo_table`, `last_key`, `high_key`, `report`, `started`, `updated`) VALUES (?, ?, 'segment', ?, ?, ?, '', UTC_TIMESTAMP(), UTC_TIMESTAMP())",
		e.m.Name, sg.id, e.m.UndoTable(), sg.last, sg.high)
	return []segment{sg}, err
}

// walkAll runs each segment on a connection of its own and returns once all are done or
// one failed (the others stop after their current batch). Every batch commits with its
// segment's progress, so whatever was committed is recorded and a re-run resumes each
// segment where it stopped.
func (e *engine) walkAll(ctx context.Context, segs []segment, changedBefore int64, meter *Meter, totalc <-chan result) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var changed atomic.Int64
	changed.Store(changedBefore)
	rowsc := make(chan int64)
	errc := make(chan error, len(segs))
	for _, sg := range segs {
		go func() {
			errc <- e.walk(ctx, sg, &changed, rowsc)
		}()
	}
	var first error
	for running := len(segs); running > 0; {
		select {
		case r := <-totalc:
			if r.err == nil { // without a total, progress shows rows done only
				meter.SetTotal(r.v.(int64))
			}
			totalc = nil
		case n := <-rowsc:
			meter.Add(n)
		case err := <-errc:
			running--
			if err != nil && first == nil {
				first = err
				cancel()
			}
		}
	}
	if first != nil {
		return e.batchErr(first, changed.Load())
	}
	if totalc != nil {
		if r := <-totalc; r.err == nil {
			meter.SetTotal(r.v.(int64))
		}
	}
	return nil
}

// walk runs sg's batches on a connection of its own, sending each full batch's row count to
// rowsc (the last, partial batch is counted by the meter's Finish).
func (e *engine) walk(ctx context.Context, sg segment, changed *atomic.Int64, rowsc chan<- int64) error {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	w := *e
	w.conn = conn
	if err := w.session(ctx); err != nil {
		return err
	}
	m, undo := e.m, e.m.UndoTable()
	record, apply := m.sqlRecord(undo), m.sqlApply(undo)
	last := sg.last
	for {
		hi, full, more, err := w.bound(ctx, m.Table, last, sg.high)
		if err != nil {
			return &batchError{lo: last, err: err}
		}
		if !more {
			return nil
		}
		var n int64
		err = w.inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, record, last, hi)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
			if n > 0 {
				if _, err := tx.ExecContext(ctx, apply, last, hi); err != nil {
					return err
				}
			}
			_, err = tx.ExecContext(ctx, "UPDATE `"+ProgressTable+"` SET `last_key` = ?, `changed` = `changed` + ?, `updated` = UTC_TIMESTAMP() WHERE `name` = ? AND `segment` = ?", hi, n, m.Name, sg.id)
			return err
		})
		if err != nil {
			return &batchError{lo: last, hi: hi, err: err}
		}
		changed.Add(n)
		last = hi
		if full {
			select {
			case rowsc <- int64(e.batch):
			case <-ctx.Done(): // another segment failed, or the run was cancelled
				return &batchError{lo: last, err: ctx.Err()}
			}
		}
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

// batchError is where a segment stopped: after key lo, in the batch up to hi (0: finding it).
type batchError struct {
	lo, hi int64
	err    error
}

func (b *batchError) Error() string { return b.err.Error() }
func (b *batchError) Unwrap() error { return b.err }

func (e *engine) batchErr(err error, changed int64) error {
	where := "while starting"
	var b *batchError
	if errors.As(err, &b) {
		err = b.err
		where = fmt.Sprintf("after %s %d", e.m.Key, b.lo)
		if b.hi != 0 {
			where = fmt.Sprintf("%s %d..%d", e.m.Key, b.lo+1, b.hi)
		}
	}
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
			out = append(out, fmt.Sprintf(n.Say, Group(counts[i])))
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
