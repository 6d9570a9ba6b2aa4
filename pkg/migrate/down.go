package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// This file holds down: the backup first, then every recorded row put back while it still
// holds what the migration wrote, and the emrkit tables dropped last.

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
		// The undo table alone is enough (see the package doc): down writes only the rows it
		// lists, only where they hold its new values, and only its old values.
		file, err := backup(ctx, "before-migrate-down-"+m.Name, undo, ProgressTable)
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
