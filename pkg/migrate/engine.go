package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emrkit/emrkit/pkg/progress"
	"github.com/go-sql-driver/mysql"
)

// This file holds the engine: one migration on one connection, its session settings, the
// key-range probes its batches are cut by, and the retried transaction every batch runs in.

// engine runs one migration over one connection.
type engine struct {
	m        Migration
	db       *sql.DB // for the scans that run beside the batches
	conn     *sql.Conn
	database string
	batch    int
	workers  int // up's connections at once
	meter    func(label string, total int64) *progress.Meter
	out      io.Writer
	// afterBatch runs inside each batch's transaction, before the commit (tests slow it down
	// to kill the process half-way); beforeApply between up's record and write (tests edit a
	// row there).
	afterBatch, beforeApply func()
}

// session sets up a connection of the run: strict sql_mode, and READ COMMITTED. Batches do
// not need REPEATABLE READ's locks: up's write and down's restore are compare-and-swap on the
// recorded values, which UPDATE reads as last committed. Fewer locks spare OSCAR's own writes
// (the batch's unchanged rows are not held until its commit) and the server's CPU.
// Statement-based binary logging refuses READ COMMITTED writes, so a server logging that way
// keeps REPEATABLE READ.
func (e *engine) session(ctx context.Context) error {
	if _, err := e.conn.ExecContext(ctx, sessionMode); err != nil {
		return fmt.Errorf("set strict sql_mode: %w", err)
	}
	var statementLog bool
	if err := e.conn.QueryRowContext(ctx, "SELECT @@log_bin = 1 AND @@binlog_format = 'STATEMENT'").Scan(&statementLog); err != nil {
		return fmt.Errorf("read binlog_format: %w", err)
	}
	if !statementLog {
		if _, err := e.conn.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"); err != nil {
			return fmt.Errorf("set READ COMMITTED: %w", err)
		}
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

// minKey returns one less than table's smallest key (the "last done" before the first
// batch); found is false when the table is empty.
func (e *engine) minKey(ctx context.Context, table string) (last int64, found bool, err error) {
	var min sql.NullInt64
	if err := e.conn.QueryRowContext(ctx, fmt.Sprintf("SELECT MIN(%s) FROM %s", q(e.m.Key), q(table))).Scan(&min); err != nil {
		return 0, false, err
	}
	if !min.Valid {
		return 0, false, nil
	}
	return min.Int64 - 1, true, nil
}

// left counts the rows of table in segs' key ranges, on a connection from the pool.
func (e *engine) left(ctx context.Context, table string, segs []segment) (any, error) {
	var n int64
	for _, sg := range segs {
		c, err := e.count(ctx, e.db, table, sg.last, sg.high)
		if err != nil {
			return nil, err
		}
		n += c
	}
	return n, nil
}

// errRaced is a batch whose rows another transaction changed while it ran.
var errRaced = errors.New("rows changed while the batch ran")

// retryable reports whether err is a deadlock or lock-wait timeout against someone else's
// transaction, or a batch that raced one: the batch rolled back and can simply run again.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.Is(err, errRaced) || errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
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
