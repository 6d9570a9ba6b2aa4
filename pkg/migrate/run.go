package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultBatchSize is how many rows (by primary key) one transaction covers: large enough that
// per-batch overhead stays a few percent of the work, small enough that the row locks a
// batch holds last tens of milliseconds.
const DefaultBatchSize = 10000

// DefaultWorkers is how many connections up runs batches on at once, each walking its own
// contiguous segment of the key range. Two keep a second core busy while one batch waits for
// its commit to reach the disk (measured on 2 cores: a million rows in 0.6 times one worker's
// time); more buy little there and load a clinic's live server for nothing.
const DefaultWorkers = 2

// sessionMode makes a value that does not fit its column an error instead of a truncation,
// whatever the server's global sql_mode (OSCAR installs often run with an empty sql_mode).
const sessionMode = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"

// Progress-table states.
const (
	stateRunning = "running" // up is under way (or was interrupted)
	stateDone    = "done"    // up finished
	stateUndoing = "undoing" // down is under way (or was interrupted)
)

// createProgress creates the progress table (see the package doc). Segment 0 is a
// migration's own row; up's workers each keep their segment's progress in rows 1..n while
// it runs.
const createProgress = "CREATE TABLE IF NOT EXISTS `" + ProgressTable + "` (" +
	"`name` VARCHAR(64) NOT NULL," +
	"`segment` INT NOT NULL DEFAULT 0," +
	"`state` VARCHAR(16) NOT NULL," +
	"`undo_table` VARCHAR(64) NOT NULL," +
	"`last_key` BIGINT NOT NULL," +
	"`high_key` BIGINT NOT NULL," +
	"`changed` BIGINT NOT NULL DEFAULT 0," +
	"`restored` BIGINT NOT NULL DEFAULT 0," +
	"`kept` BIGINT NOT NULL DEFAULT 0," +
	"`kept_sample` VARCHAR(255) NOT NULL DEFAULT ''," +
	"`report` TEXT NOT NULL," +
	"`backup` VARCHAR(4096) NOT NULL DEFAULT ''," +
	"`started` DATETIME NOT NULL," +
	"`updated` DATETIME NOT NULL," +
	"PRIMARY KEY (`name`, `segment`)" +
	") ENGINE=InnoDB COMMENT='emrkit: progress of data migrations (emrkit migrate list)'"

// mainRow selects a migration's own progress row.
const mainRow = " WHERE `name` = ? AND `segment` = 0"

// State is a migration's row in the progress table.
type State struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // running, done or undoing
	UndoTable string    `json:"undo_table"`
	LastKey   int64     `json:"last_key"` // every key up to it is done (up: in every segment) or undone
	HighKey   int64     `json:"high_key"` // the last key when up started: rows added later are not migrated
	Changed   int64     `json:"changed"`  // rows up changed (rows in the undo table)
	Restored  int64     `json:"restored"` // rows down restored so far
	Kept      int64     `json:"kept"`     // rows down kept (edited or deleted since)
	Report    string    `json:"report,omitempty"`
	Backup    string    `json:"backup,omitempty"` // the backup down took first
	Started   time.Time `json:"started"`
	Updated   time.Time `json:"updated"`
	keptKeys  string
}

// ReadState returns name's progress row; ok is false when there is none.
func ReadState(ctx context.Context, db querier, name string) (st State, ok bool, err error) {
	var started, updated int64
	defer func() { st.Started, st.Updated = time.Unix(started, 0).UTC(), time.Unix(updated, 0).UTC() }()
	exists, err := tableExists(ctx, db, ProgressTable)
	if err != nil || !exists {
		return State{}, false, err
	}
	err = db.QueryRowContext(ctx, "SELECT `name`, `state`, `undo_table`, `last_key`, `high_key`, `changed`, `restored`, `kept`, `kept_sample`, `report`, `backup`, UNIX_TIMESTAMP(`started`), UNIX_TIMESTAMP(`updated`) FROM `"+
		ProgressTable+"`"+mainRow, name).
		Scan(&st.Name, &st.State, &st.UndoTable, &st.LastKey, &st.HighKey, &st.Changed, &st.Restored, &st.Kept, &st.keptKeys, &st.Report, &st.Backup, &started, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read progress of %s: %w", name, err)
	}
	if st.State == stateRunning {
		// The workers' rows hold what is done so far.
		var n, changed int64
		var last sql.NullInt64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*), MIN(`last_key`), COALESCE(SUM(`changed`), 0) FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0", name).
			Scan(&n, &last, &changed); err != nil {
			return State{}, false, fmt.Errorf("read progress of %s: %w", name, err)
		}
		if n > 0 {
			st.LastKey, st.Changed = last.Int64, st.Changed+changed
		}
	}
	return st, true, nil
}

// querier is what *sql.DB, *sql.Conn and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func tableExists(ctx context.Context, db querier, table string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up table %s: %w", table, err)
	}
	return n > 0, nil
}

// checkSchema says, in one line naming the fix, what the database lacks for m: the table,
// a column, or an integer primary key.
func checkSchema(ctx context.Context, db querier, m Migration, database string) error {
	rows, err := db.QueryContext(ctx,
		"SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", m.Table)
	if err != nil {
		return fmt.Errorf("columns of %s: %w", m.Table, err)
	}
	defer rows.Close()
	type col struct{ typ, key string }
	have := map[string]col{}
	for rows.Next() {
		var name, typ, key string
		if err := rows.Scan(&name, &typ, &key); err != nil {
			return err
		}
		have[strings.ToLower(name)] = col{typ, key}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(have) == 0 {
		return fmt.Errorf("database %s has no %s table; set database.name to OSCAR's database (usually oscar_15)", database, m.Table)
	}
	need := []string{m.Key}
	for _, c := range m.Columns {
		need = append(need, c.Name)
	}
	need = append(need, m.Reads...)
	for _, n := range need {
		if _, ok := have[strings.ToLower(n)]; !ok {
			return fmt.Errorf("%s.%s has no column %s, which migration %s needs; is this OSCAR 15 or later's schema?", database, m.Table, n, m.Name)
		}
	}
	k := have[strings.ToLower(m.Key)]
	if k.key != "PRI" || !strings.Contains(k.typ, "int") {
		return fmt.Errorf("%s.%s: %s is not an integer primary key (%s %s); migration %s walks the table by it", database, m.Table, m.Key, k.typ, k.key, m.Name)
	}
	return nil
}

// engine runs one migration over one connection.
type engine struct {
	m        Migration
	db       *sql.DB // for the scans that run beside the batches
	conn     *sql.Conn
	database string
	batch    int
	workers  int // up's connections at once
	meter    func(label string, total int64) *Meter
	out      io.Writer
	// afterBatch runs inside each batch's transaction, before the commit (tests slow it down
	// to kill the process half-way).
	afterBatch func()
}

func (e *engine) session(ctx context.Context) error {
	if _, err := e.conn.ExecContext(ctx, sessionMode); err != nil {
		return fmt.Errorf("set strict sql_mode: %w", err)
	}
	return nil
}

// bound returns the upper key of the batch after last in table, up to limit: the key batch
// rows on, or the last key up to limit; ok is false when no row is left. full says the batch
// holds exactly e.batch rows.
func (e *engine) bound(ctx context.Context, table string, last, limit int64) (hi int64, full, ok bool, err error) {
	k := q(e.m.Key)
	err = e.conn.QueryRowContext(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s > ? AND %s <= ? ORDER BY %s LIMIT 1 OFFSET %d", k, q(table), k, k, k, e.batch-1), last, limit).Scan(&hi)
	if err == nil {
		return hi, true, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, false, err
	}
	var max sql.NullInt64
	if err := e.conn.QueryRowContext(ctx, fmt.Sprintf("SELECT MAX(%s) FROM %s WHERE %s > ? AND %s <= ?", k, q(table), k, k), last, limit).Scan(&max); err != nil {
		return 0, false, false, err
	}
	return max.Int64, false, max.Valid, nil
}

// noLimit bounds a walk of the undo table: every recorded row.
const noLimit = 1<<63 - 1

// maxKey returns table's largest key, or last when it is empty.
func (e *engine) maxKey(ctx context.Context, table string, last int64) (int64, error) {
	var max sql.NullInt64
	if err := e.conn.QueryRowContext(ctx, fmt.Sprintf("SELECT MAX(%s) FROM %s", q(e.m.Key), q(table))).Scan(&max); err != nil {
		return 0, err
	}
	if !max.Valid {
		return last, nil
	}
	return max.Int64, nil
}

// count returns how many rows of table have a key above last (and at most hi).
func (e *engine) count(ctx context.Context, db querier, table string, last int64, hi ...int64) (int64, error) {
	k := q(e.m.Key)
	query, args := fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE %s > ?", q(table), k), []any{last}
	if len(hi) > 0 {
		query += " AND " + k + " <= ?"
		args = append(args, hi[0])
	}
	var n int64
	err := db.QueryRowContext(ctx, query, args...).Scan(&n)
	return n, err
}

// countAll counts table's rows with a bare COUNT(*), which InnoDB answers from the smallest
// index rather than the whole clustered table.
func (e *engine) countAll(ctx context.Context, table string) (any, error) {
	var n int64
	err := e.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+q(table)).Scan(&n)
	return n, err
}

type result struct {
	v   any
	err error
}

// async runs fn on its own connection from the pool and delivers its result.
func (e *engine) async(ctx context.Context, fn func(ctx context.Context) (any, error)) <-chan result {
	c := make(chan result, 1)
	go func() {
		v, err := fn(ctx)
		c <- result{v, err}
	}()
	return c
}

// minKey returns one less than table's smallest key (the "last done" before the first batch).
func (e *engine) minKey(ctx context.Context, table string) (int64, error) {
	var min sql.NullInt64
	if err := e.conn.QueryRowContext(ctx, fmt.Sprintf("SELECT MIN(%s) FROM %s", q(e.m.Key), q(table))).Scan(&min); err != nil {
		return 0, err
	}
	if !min.Valid {
		return 0, nil
	}
	return min.Int64 - 1, nil
}

// retryable reports whether err is a deadlock or lock-wait timeout against someone else's
// transaction: the batch rolled back and can simply run again.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

const maxAttempts = 5

// inTx runs fn in a transaction on e.conn, again after a deadlock or lock-wait timeout.
func (e *engine) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		var tx *sql.Tx
		tx, err = e.conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err = fn(tx); err == nil {
			if e.afterBatch != nil {
				e.afterBatch()
			}
			if err = tx.Commit(); err == nil {
				return nil
			}
		} else {
			tx.Rollback()
		}
		if !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w (gave up after %d attempts)", err, maxAttempts)
}

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

// BackupFunc dumps tables of the migration's database before down destroys anything and
// returns the backup file; label names the occasion in the file name.
type BackupFunc func(ctx context.Context, label string, tables ...string) (string, error)

// DownResult is what down did.
type DownResult struct {
	Restored int64   // rows put back to their values before the migration
	Kept     int64   // rows edited (or deleted) since the migration, left as they are
	KeptKeys []int64 // up to maxKeptKeys of the kept rows' keys
	Already  bool    // nothing to undo: the migration never ran, or was undone
	Backup   string  // the backup taken first
	Gone     string  // why the undo could not happen (the undo table was dropped by hand)
}

// maxKeptKeys bounds the sample of kept keys down reports.
const maxKeptKeys = 20

// down restores, compare-and-swap, the rows up recorded, after backing up; see the package doc.
func (e *engine) down(ctx context.Context, undo string, backup BackupFunc) (DownResult, error) {
	m := e.m
	if err := e.session(ctx); err != nil {
		return DownResult{}, err
	}
	st, ok, err := ReadState(ctx, e.conn, m.Name)
	if err != nil {
		return DownResult{}, err
	}
	undoExists, err := tableExists(ctx, e.conn, undo)
	if err != nil {
		return DownResult{}, err
	}
	switch {
	case !ok && !undoExists:
		return DownResult{Already: true}, nil
	case ok && !undoExists && st.State == stateUndoing:
		// Interrupted after dropping the undo table: only the bookkeeping is left.
		return e.finishDown(ctx, undo, st)
	case !undoExists:
		return DownResult{Gone: fmt.Sprintf("the undo table %s is gone (dropped outside emrkit); restore from a backup to undo %s", undo, m.Name)}, nil
	}
	if err := checkSchema(ctx, e.conn, m, e.database); err != nil {
		return DownResult{}, err
	}
	if !ok {
		// Undo data without a progress row (a crash right after creating the table, or the
		// row deleted by hand): undo what is recorded.
		if _, err := e.conn.ExecContext(ctx, createProgress); err != nil {
			return DownResult{}, err
		}
		if _, err := e.conn.ExecContext(ctx, "INSERT INTO `"+ProgressTable+"` (`name`, `state`, `undo_table`, `last_key`, `high_key`, `report`, `started`, `updated`) VALUES (?, ?, ?, 0, 0, '', UTC_TIMESTAMP(), UTC_TIMESTAMP())",
			m.Name, stateRunning, undo); err != nil {
			return DownResult{}, err
		}
		st = State{Name: m.Name, State: stateRunning, UndoTable: undo}
	}
	if st.State != stateUndoing {
		rows, err := e.count(ctx, e.conn, undo, -1<<63)
		if err != nil {
			return DownResult{}, err
		}
		if rows == 0 {
			st.State = stateUndoing
			return e.finishDown(ctx, undo, st)
		}
		start, err := e.minKey(ctx, undo)
		if err != nil {
			return DownResult{}, err
		}
		st.LastKey, st.Restored, st.Kept, st.keptKeys = start, 0, 0, ""
	}
	if st.Backup == "" || !exists(st.Backup) {
		if backup == nil {
			return DownResult{}, fmt.Errorf("no backup function: refusing to undo %s without a backup", m.Name)
		}
		file, err := backup(ctx, "before-migrate-down-"+m.Name, m.Table, undo, ProgressTable)
		if err != nil {
			return DownResult{}, fmt.Errorf("backup before undoing %s: %w; nothing was undone", m.Name, err)
		}
		st.Backup = file
	}
	if _, err := e.conn.ExecContext(ctx, "UPDATE `"+ProgressTable+"` SET `state` = ?, `last_key` = ?, `restored` = ?, `kept` = ?, `kept_sample` = ?, `backup` = ?, `updated` = UTC_TIMESTAMP()"+mainRow,
		stateUndoing, st.LastKey, st.Restored, st.Kept, st.keptKeys, st.Backup, m.Name); err != nil {
		return DownResult{}, fmt.Errorf("record undo of %s: %w", m.Name, err)
	}
	if st.State == stateUndoing {
		fmt.Fprintf(e.out, "%s: resuming undo after %s %d (%s rows restored so far)\n", m.Name, m.Key, st.LastKey, Group(st.Restored))
	}
	st.State = stateUndoing

	total, err := e.count(ctx, e.conn, undo, st.LastKey)
	if err != nil {
		return DownResult{}, err
	}
	meter := e.meter("undo "+m.Name, total)
	restore, kept := m.sqlRestore(undo), m.sqlKept(undo)
	for {
		hi, full, more, err := e.bound(ctx, undo, st.LastKey, noLimit)
		if err != nil {
			return DownResult{}, e.undoErr(st, err)
		}
		if !more {
			break
		}
		n := int64(e.batch)
		if !full {
			if n, err = e.count(ctx, e.conn, undo, st.LastKey, hi); err != nil {
				return DownResult{}, e.undoErr(st, err)
			}
		}
		var restored int64
		var keptKeys []int64
		err = e.inTx(ctx, func(tx *sql.Tx) error {
			keptKeys = nil
			res, err := tx.ExecContext(ctx, restore, st.LastKey, hi)
			if err != nil {
				return err
			}
			if restored, err = res.RowsAffected(); err != nil {
				return err
			}
			if restored < n {
				if keptKeys, err = keys(ctx, tx, kept, st.LastKey, hi); err != nil {
					return err
				}
			}
			sample := addSample(st.keptKeys, keptKeys)
			_, err = tx.ExecContext(ctx, "UPDATE `"+ProgressTable+"` SET `last_key` = ?, `restored` = `restored` + ?, `kept` = `kept` + ?, `kept_sample` = ?, `updated` = UTC_TIMESTAMP()"+mainRow,
				hi, restored, len(keptKeys), sample, m.Name)
			return err
		})
		if err != nil {
			return DownResult{}, e.undoErr(st, err)
		}
		st.LastKey, st.Restored, st.Kept = hi, st.Restored+restored, st.Kept+int64(len(keptKeys))
		st.keptKeys = addSample(st.keptKeys, keptKeys)
		meter.Add(n)
	}
	meter.Finish()
	return e.finishDown(ctx, undo, st)
}

func (e *engine) undoErr(st State, err error) error {
	return fmt.Errorf("undo of %s stopped after %s %d: %w; the %d rows restored so far stay restored, and the rest stay recorded in %s: run `emrkit migrate down %s` again to finish",
		e.m.Name, e.m.Key, st.LastKey, err, st.Restored, e.m.UndoTable(), e.m.Name)
}

// finishDown drops the undo table, then the progress row (and the progress table with its
// last row). A crash in between is finished by the next down.
func (e *engine) finishDown(ctx context.Context, undo string, st State) (DownResult, error) {
	if _, err := e.conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+q(undo)); err != nil {
		return DownResult{}, fmt.Errorf("drop %s: %w", undo, err)
	}
	if _, err := e.conn.ExecContext(ctx, "DELETE FROM `"+ProgressTable+"` WHERE `name` = ?", e.m.Name); err != nil {
		return DownResult{}, fmt.Errorf("clear progress of %s: %w", e.m.Name, err)
	}
	var left int
	if err := e.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+ProgressTable+"`").Scan(&left); err != nil {
		return DownResult{}, err
	}
	if left == 0 {
		if _, err := e.conn.ExecContext(ctx, "DROP TABLE IF EXISTS `"+ProgressTable+"`"); err != nil {
			return DownResult{}, err
		}
	}
	r := DownResult{Restored: st.Restored, Kept: st.Kept, Backup: st.Backup, Already: st.Restored == 0 && st.Kept == 0}
	for f := range strings.FieldsSeq(strings.ReplaceAll(st.keptKeys, ",", " ")) {
		if k, err := strconv.ParseInt(f, 10, 64); err == nil {
			r.KeptKeys = append(r.KeptKeys, k)
		}
	}
	return r, nil
}

func keys(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// addSample appends keys to the comma-separated sample, up to maxKeptKeys.
func addSample(sample string, keys []int64) string {
	n := 0
	if sample != "" {
		n = strings.Count(sample, ",") + 1
	}
	for _, k := range keys {
		if n >= maxKeptKeys {
			break
		}
		if sample != "" {
			sample += ","
		}
		sample += strconv.FormatInt(k, 10)
		n++
	}
	return sample
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
