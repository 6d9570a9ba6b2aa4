package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/progress"
)

// This file holds the walk up and down share: a key range cut into segments, each walked
// on a connection of its own, batch by batch, every batch committing its work together with
// its segment's progress row.

// segment is one worker's share of a walk's key range: keys in (last, high].
type segment struct {
	id         int
	last, high int64
	sample     string // the kept keys' sample so far (down)
}

// tally is what one batch did; it is added to the segment's progress row in the batch's
// transaction.
type tally struct {
	changed  int64   // up: rows changed and recorded
	restored int64   // down: rows put back
	kept     []int64 // down: rows edited since, left as they are
}

// add sums the counts; kept keys are not gathered (a segment's sample holds the first ones).
func (t *tally) add(o tally) {
	t.changed += o.changed
	t.restored += o.restored
}

// batchFunc does one batch's work on keys (lo, hi] inside tx; full says the batch holds
// exactly e.batch keys of the walked table (a segment's last batch may hold fewer).
type batchFunc func(ctx context.Context, tx *sql.Tx, lo, hi int64, full bool) (tally, error)

// insertSegments records (start, high] split into equal key ranges, one per worker (fewer
// when there are few keys), as segment rows 1..n of the migration.
func (e *engine) insertSegments(ctx context.Context, tx *sql.Tx, start, high int64) error {
	n := int64(max(1, min(e.workers, int((high-start)/int64(e.batch)))))
	for i := int64(1); i <= n; i++ {
		lo, hi := start+(high-start)*(i-1)/n, start+(high-start)*i/n
		if _, err := tx.ExecContext(ctx, insertProgress, e.m.Name, i, stateSegment, e.m.UndoTable(), lo, hi); err != nil {
			return err
		}
	}
	return nil
}

// insertProgress adds a progress row: name, segment, state, undo table, last and high key.
const insertProgress = "INSERT INTO `" + ProgressTable + "` (`name`, `segment`, `state`, `undo_table`, `last_key`, `high_key`, `report`, `started`, `updated`) VALUES (?, ?, ?, ?, ?, ?, '', UTC_TIMESTAMP(), UTC_TIMESTAMP())"

// segments returns the segments with keys left to do. A migration without segment rows
// (an earlier release's down, which walked on one connection, or an up whose row down's
// bookkeeping made) gets one for (last, high], when that holds any key.
func (e *engine) segments(ctx context.Context, last, high int64) ([]segment, error) {
	rows, err := e.conn.QueryContext(ctx, "SELECT `segment`, `last_key`, `high_key`, `kept_sample` FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0 ORDER BY `segment`", e.m.Name)
	if err != nil {
		return nil, fmt.Errorf("read progress of %s: %w", e.m.Name, err)
	}
	defer rows.Close()
	var out []segment
	found := false
	for rows.Next() {
		var sg segment
		if err := rows.Scan(&sg.id, &sg.last, &sg.high, &sg.sample); err != nil {
			return nil, err
		}
		if sg.last < sg.high {
			out = append(out, sg)
		}
		found = true
	}
	if err := rows.Err(); err != nil || found || last >= high {
		return out, err
	}
	sg := segment{id: 1, last: last, high: high}
	_, err = e.conn.ExecContext(ctx, insertProgress, e.m.Name, sg.id, stateSegment, e.m.UndoTable(), sg.last, sg.high)
	return []segment{sg}, err
}

// walkAll runs each segment of table on a connection of its own and returns what this run
// did once all are done or one failed (the others stop after their current batch; the
// error is a *batchError saying where). Every batch commits with its segment's progress, so
// whatever was committed is recorded and a re-run resumes each segment where it stopped.
// meter counts the rows of full batches (its Finish counts the rest); totalc, when not nil,
// delivers its total.
func (e *engine) walkAll(ctx context.Context, table string, segs []segment, do batchFunc, meter *progress.Meter, totalc <-chan result) (tally, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	donec := make(chan batchDone)
	errc := make(chan error, len(segs))
	for _, sg := range segs {
		go func() {
			errc <- e.walk(ctx, table, sg, do, donec)
		}()
	}
	var sum tally
	var first error
	for running := len(segs); running > 0; {
		select {
		case r := <-totalc:
			if r.err == nil { // without a total, progress shows rows done only
				meter.SetTotal(r.v.(int64))
			}
			totalc = nil
		case d := <-donec:
			sum.add(d.tally)
			if d.rows > 0 {
				meter.Add(d.rows)
			}
		case err := <-errc:
			running--
			if err != nil && first == nil {
				first = err
				cancel()
			}
		}
	}
	if first != nil {
		return sum, first
	}
	if totalc != nil {
		if r := <-totalc; r.err == nil {
			meter.SetTotal(r.v.(int64))
		}
	}
	return sum, nil
}

// batchDone is what a committed batch did, and its rows for the meter (0: not a full batch).
type batchDone struct {
	tally
	rows int64
}

// walk runs sg's batches on a connection of its own, sending what each did to donec after
// its commit (walkAll receives until every walk has returned).
func (e *engine) walk(ctx context.Context, table string, sg segment, do batchFunc, donec chan<- batchDone) error {
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
	const progress = "UPDATE `" + ProgressTable + "` SET `last_key` = ?, `changed` = `changed` + ?, `restored` = `restored` + ?, `kept` = `kept` + ?, `kept_sample` = ?, `updated` = UTC_TIMESTAMP() WHERE `name` = ? AND `segment` = ?"
	for last := sg.last; ; {
		hi, full, more, err := w.bound(ctx, table, last, sg.high)
		if err != nil {
			return &batchError{lo: last, err: err}
		}
		if !more {
			return nil
		}
		var t tally
		var sample string
		err = w.inTx(ctx, func(tx *sql.Tx) error {
			if t, err = do(ctx, tx, last, hi, full); err != nil {
				return err
			}
			sample = addSample(sg.sample, t.kept)
			_, err = tx.ExecContext(ctx, progress, hi, t.changed, t.restored, len(t.kept), sample, e.m.Name, sg.id)
			return err
		})
		if err != nil {
			return &batchError{lo: last, hi: hi, err: err}
		}
		last, sg.sample = hi, sample
		d := batchDone{tally: t}
		if full {
			d.rows = int64(e.batch)
		}
		donec <- d
	}
}

// batchError is where a segment stopped: after key lo, in the batch up to hi (0: finding it).
type batchError struct {
	lo, hi int64
	err    error
}

func (b *batchError) Error() string { return b.err.Error() }
func (b *batchError) Unwrap() error { return b.err }

// where words err's place in the key range, and returns the error it wraps.
func (e *engine) where(err error) (string, error) {
	var b *batchError
	if !errors.As(err, &b) {
		return "while starting", err
	}
	if b.hi != 0 {
		return fmt.Sprintf("%s %d..%d", e.m.Key, b.lo+1, b.hi), b.err
	}
	return fmt.Sprintf("after %s %d", e.m.Key, b.lo), b.err
}

// addSample appends keys to the comma-separated sample, up to maxKeptKeys.
func addSample(sample string, keys []int64) string {
	parts := strings.FieldsFunc(sample, func(r rune) bool { return r == ',' })
	for _, k := range keys {
		if len(parts) >= maxKeptKeys {
			break
		}
		parts = append(parts, strconv.FormatInt(k, 10))
	}
	return strings.Join(parts, ",")
}

// sampleKeys parses a comma-separated sample.
func sampleKeys(sample string) []int64 {
	var out []int64
	for f := range strings.SplitSeq(sample, ",") {
		if k, err := strconv.ParseInt(f, 10, 64); err == nil {
			out = append(out, k)
		}
	}
	return out
}
