package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"os"

	"github.com/emrkit/emrkit/pkg/progress"
)

// This file holds down: the backup first, then every recorded row put back while it still
// holds what the migration wrote (the undo table's keys walked as in walk.go), and the
// emrkit tables dropped last.

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
		if _, err := e.conn.ExecContext(ctx, insertProgress, m.Name, 0, stateRunning, undo, 0, 0); err != nil {
			return DownResult{}, err
		}
		st = State{Name: m.Name, State: stateRunning, UndoTable: undo}
	}
	if st.State != stateUndoing {
		start, found, err := e.minKey(ctx, undo)
		if err != nil {
			return DownResult{}, err
		}
		if !found {
			st.State = stateUndoing
			return e.finishDown(ctx, undo, st)
		}
		st.LastKey, st.Restored, st.Kept, st.keptKeys = start, 0, 0, ""
	}
	if st.Backup == "" || !exists(st.Backup) {
		if backup == nil {
			return DownResult{}, fmt.Errorf("no backup function: refusing to undo %s without a backup", m.Name)
		}
		// The undo table alone is enough (see the package doc): down writes only the rows it
		// lists, only where they hold its new values, and only its old values.
		file, err := backup(ctx, "before-migrate-down-"+m.Name, undo, ProgressTable)
		if err != nil {
			return DownResult{}, fmt.Errorf("backup before undoing %s: %w; nothing was undone", m.Name, err)
		}
		st.Backup = file
	}
	high, err := e.maxKey(ctx, undo, st.LastKey)
	if err != nil {
		return DownResult{}, err
	}
	if st.State == stateUndoing {
		if _, err := e.conn.ExecContext(ctx, "UPDATE `"+ProgressTable+"` SET `backup` = ?"+mainRow, st.Backup, m.Name); err != nil {
			return DownResult{}, fmt.Errorf("record undo of %s: %w", m.Name, err)
		}
		fmt.Fprintf(e.out, "%s: resuming undo after %s %d (%s rows restored so far)\n", m.Name, m.Key, st.LastKey, progress.Group(st.Restored))
	} else if err := e.beginDown(ctx, st.LastKey, high, st.Backup); err != nil {
		return DownResult{}, fmt.Errorf("record undo of %s: %w", m.Name, err)
	}
	segs, err := e.segments(ctx, st.LastKey, high)
	if err != nil {
		return DownResult{}, err
	}
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	totalc := e.async(bg, func(ctx context.Context) (any, error) { return e.left(ctx, undo, segs) })
	meter := e.meter("undo "+m.Name, -1)
	if run, err := e.walkAll(ctx, undo, segs, e.downBatch(undo), meter, totalc); err != nil {
		where, err := e.where(err)
		return DownResult{}, fmt.Errorf("undo of %s stopped at %s: %w; the %d rows restored so far stay restored, and the rest stay recorded in %s: run `emrkit migrate down %s` again to finish",
			m.Name, where, err, st.Restored+run.restored, undo, m.Name)
	}
	meter.Finish()
	if st, _, err = ReadState(ctx, e.conn, m.Name); err != nil {
		return DownResult{}, err
	}
	return e.finishDown(ctx, undo, st)
}

// beginDown records, in one transaction, that down runs over the undo table's keys
// (start, high] from its first batch, with its backup: the migration's row set to undoing,
// and fresh segments (an interrupted up's are replaced).
func (e *engine) beginDown(ctx context.Context, start, high int64, backup string) error {
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE `"+ProgressTable+"` SET `state` = ?, `last_key` = ?, `restored` = 0, `kept` = 0, `kept_sample` = '', `backup` = ?, `updated` = UTC_TIMESTAMP()"+mainRow,
		stateUndoing, start, backup, e.m.Name); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0", e.m.Name); err != nil {
		return err
	}
	if err := e.insertSegments(ctx, tx, start, high); err != nil {
		return err
	}
	return tx.Commit()
}

// downBatch restores one batch of undo rows, compare-and-swap; when fewer rows were restored
// than the batch lists (or the batch is a segment's last, whose size is not counted), it
// finds the rows edited or deleted since.
func (e *engine) downBatch(undo string) batchFunc {
	restore, kept := e.m.sqlRestore(undo), e.m.sqlKept(undo)
	return func(ctx context.Context, tx *sql.Tx, lo, hi int64, full bool) (tally, error) {
		res, err := tx.ExecContext(ctx, restore, lo, hi)
		if err != nil {
			return tally{}, err
		}
		t := tally{}
		if t.restored, err = res.RowsAffected(); err != nil {
			return tally{}, err
		}
		if !full || t.restored < int64(e.batch) {
			if t.kept, err = keys(ctx, tx, kept, lo, hi); err != nil {
				return tally{}, err
			}
		}
		return t, nil
	}
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
	return DownResult{Restored: st.Restored, Kept: st.Kept, KeptKeys: sampleKeys(st.keptKeys), Backup: st.Backup,
		Already: st.Restored == 0 && st.Kept == 0}, nil
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

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
