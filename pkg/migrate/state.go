package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds the tuning constants, the progress table's states and the checks a
// migration runs before it touches anything.

// DefaultBatchSize is how many rows (by primary key) one transaction covers: large enough that
// per-batch overhead stays a few percent of the work, small enough that the row locks a
// batch holds last tens of milliseconds.
const DefaultBatchSize = 10000

// DefaultWorkers is how many connections up and down run batches on at once, each walking
// its own contiguous segment of the key range. Two keep a second core busy while one batch
// waits for its commit to reach the disk (measured on 2 cores: a million rows in 0.6 times
// one worker's time); three measured no faster there, and more load a clinic's live server
// for nothing.
const DefaultWorkers = 2

// sessionMode makes a value that does not fit its column an error instead of a truncation,
// whatever the server's global sql_mode (OSCAR installs often run with an empty sql_mode).
const sessionMode = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"

// Progress-table states.
const (
	stateRunning = "running" // up is under way (or was interrupted)
	stateDone    = "done"    // up finished
	stateUndoing = "undoing" // down is under way (or was interrupted)
	stateSegment = "segment" // a worker's row (segment > 0) while up or down runs
)

// createProgress creates the progress table (see the package doc). Segment 0 is a
// migration's own row; the workers of up or down each keep their segment's progress in rows
// 1..n while it runs.
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
	LastKey   int64     `json:"last_key"` // every key up to it is done or undone (in every segment)
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
	if st.State != stateDone {
		// The workers' rows hold what is done so far.
		var n, changed, restored, kept int64
		var last sql.NullInt64
		var samples sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*), MIN(`last_key`), COALESCE(SUM(`changed`), 0), COALESCE(SUM(`restored`), 0), COALESCE(SUM(`kept`), 0),"+
			" GROUP_CONCAT(NULLIF(`kept_sample`, '') ORDER BY `segment`) FROM `"+ProgressTable+"` WHERE `name` = ? AND `segment` > 0", name).
			Scan(&n, &last, &changed, &restored, &kept, &samples); err != nil {
			return State{}, false, fmt.Errorf("read progress of %s: %w", name, err)
		}
		if n > 0 {
			st.LastKey, st.Changed, st.Restored, st.Kept = last.Int64, st.Changed+changed, st.Restored+restored, st.Kept+kept
			st.keptKeys = addSample(st.keptKeys, sampleKeys(samples.String))
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
