package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/redact"
)

// ScratchDatabase is where a restore test loads a backup: emrkit's own, dropped after each
// test (and before one, should an earlier test have been killed).
const ScratchDatabase = "emrkit_restore_test"

// VerifyResult is what a restore test proved.
type VerifyResult struct {
	File    string    `json:"file"`
	Time    time.Time `json:"time"`
	Seconds float64   `json:"seconds"`
	OK      bool      `json:"ok"`
	Tables  int       `json:"tables"`
	Rows    int64     `json:"rows"`
	Problem string    `json:"problem,omitempty"`
	// Interrupted: the test was stopped (SIGTERM, Ctrl-C) before it could judge the backup.
	Interrupted bool   `json:"interrupted,omitempty"`
	Database    string `json:"database"`
}

// VerifyRestore proves a backup restores: it loads the backup into ScratchDatabase on the
// server db reaches, dumps that database again as a backup does, and compares, table by
// table, the digest of the data statements with the backup's own; then drops the scratch
// database. A damaged or truncated backup, a restore that fails or loses a row, and a table
// whose data comes back different are each a failed result naming the table and line, never
// the data. A ctx cancelled on the way (SIGTERM) gives a result marked Interrupted: the
// backup was not judged.
func VerifyRestore(ctx context.Context, db config.Database, file string, keys openpgp.EntityList) (VerifyResult, error) {
	start := time.Now()
	res := VerifyResult{File: file, Time: start.UTC(), Database: db.Name}
	fail := func(err error) (VerifyResult, error) {
		res.Seconds = time.Since(start).Seconds()
		if errors.Is(err, ErrInterrupted) || ctx.Err() != nil {
			res.Interrupted = true
			res.Problem = fmt.Sprintf("interrupted after %.1fs, before it could judge the backup", res.Seconds)
			return res, nil
		}
		res.Problem = redact.Line(err.Error())
		return res, nil
	}
	server := db
	server.Name = ""
	conn, err := mariadb.Open(ctx, server)
	if err != nil {
		return res, fmt.Errorf("backup verify: %w", err)
	}
	defer conn.Close()
	drop := func() error {
		_, err := conn.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS `"+ScratchDatabase+"`")
		return err
	}
	if err := drop(); err != nil {
		return res, fmt.Errorf("backup verify: drop the scratch database %s: %w", ScratchDatabase, err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE `"+ScratchDatabase+"`"); err != nil {
		return res, fmt.Errorf("backup verify: create the scratch database %s: %w", ScratchDatabase, err)
	}
	defer drop()
	limit, err := maxPacket(ctx, conn)
	if err != nil {
		return res, fmt.Errorf("backup verify: %w", err)
	}

	// backup -> [decrypt] -> gunzip -> scanner (digests) + mariadb scratch
	fromFile, _, err := loadDump(ctx, loadJob{server: server, target: ScratchDatabase, file: file, keys: keys, limit: limit, digests: true})
	if err != nil {
		var load *LoadError
		if errors.As(err, &load) {
			err = fmt.Errorf("restoring it failed: %w", load)
		}
		return fail(err)
	}

	// The restored copy, dumped as a backup is, must hold the same data, table by table.
	again := newDigester()
	dump, done, err := mariadb.Command(ctx, server, "mariadb-dump", "--single-transaction",
		"--routines", "--triggers", "--events", "--hex-blob", "--", ScratchDatabase)
	if err != nil {
		return res, fmt.Errorf("backup verify: %w", err)
	}
	defer done()
	var dumpErr limitedBuffer
	dump.Stdout, dump.Stderr = again, &dumpErr
	if err := dump.Run(); err != nil {
		if ctx.Err() != nil {
			return fail(ErrInterrupted)
		}
		return res, fmt.Errorf("backup verify: dump the restored copy: %v: %s", err, redact.SQLText(dumpErr.String()))
	}
	want, got := fromFile.Digests(), again.Digests()
	var differ []string
	for t, sum := range want {
		if got[t] != sum {
			differ = append(differ, t)
		}
	}
	for t := range got {
		if _, ok := want[t]; !ok {
			differ = append(differ, t)
		}
	}
	slices.Sort(differ)
	res.Tables = len(want)
	rows, err := countRows(ctx, conn)
	if err != nil {
		return res, err
	}
	res.Rows = rows
	if len(differ) > 0 {
		return fail(fmt.Errorf("restored data differs from the backup in table(s) %s", strings.Join(differ, ", ")))
	}
	res.OK = true
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// countRows counts the rows of every table in the scratch database.
func countRows(ctx context.Context, conn *sql.DB) (int64, error) {
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'", ScratchDatabase)
	if err != nil {
		return 0, fmt.Errorf("backup verify: %w", err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return 0, err
		}
		tables = append(tables, t)
	}
	rows.Close()
	var total int64
	for _, t := range tables {
		var n int64
		q := "SELECT COUNT(*) FROM `" + ScratchDatabase + "`.`" + strings.ReplaceAll(t, "`", "``") + "`"
		if err := conn.QueryRowContext(ctx, q).Scan(&n); err != nil {
			return 0, fmt.Errorf("backup verify: count %s: %w", t, err)
		}
		total += n
	}
	return total, nil
}

// VerifyRecord is the file in emrkit's state dir holding the last restore test, for doctor.
const VerifyRecord = "backup-verify.json"

// SaveVerify records res as the last restore test.
func SaveVerify(stateDir string, res VerifyResult) error {
	return fsutil.SaveRecord(stateDir, VerifyRecord, res)
}

// LastVerify returns the last restore test (ok false: none recorded).
func LastVerify(stateDir string) (VerifyResult, bool, error) {
	var res VerifyResult
	ok, err := fsutil.LoadRecord(stateDir, VerifyRecord, &res)
	// A record written by emrkit 0.6.0 may quote the patient rows a failing statement held.
	res.Problem = redact.SQLText(res.Problem)
	return res, ok, err
}

// Newest returns the newest backup of database with label in dir (ok false: none).
func Newest(dir, database, label string) (File, bool, error) {
	all, err := List(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return File{}, false, nil
	}
	if err != nil {
		return File{}, false, err
	}
	for _, f := range slices.Backward(all) {
		if f.Database == database && f.Label == label {
			return f, true, nil
		}
	}
	return File{}, false, nil
}
