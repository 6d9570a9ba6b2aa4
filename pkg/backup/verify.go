package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/mariadb"
)

// ScratchDatabase is where a restore test loads a backup: emrkit's own, dropped after each
// test (and before one, should an earlier test have been killed).
const ScratchDatabase = "emrkit_restore_test"

// tableDigests hashes, per table, the data statements of a mariadb-dump stream (the lines
// "INSERT INTO `t` ..." after "-- Dumping data for table `t`"), and remembers the table it
// was in when the stream stopped.
type tableDigests struct {
	sums    map[string]hash.Hash
	current string
	rest    []byte
}

func newTableDigests() *tableDigests { return &tableDigests{sums: map[string]hash.Hash{}} }

func (d *tableDigests) Write(p []byte) (int, error) {
	data := append(d.rest, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		d.line(data[:i+1])
		data = data[i+1:]
	}
	d.rest = append(d.rest[:0], data...)
	return len(p), nil
}

var (
	dumpingData = []byte("-- Dumping data for table `")
	insertInto  = []byte("INSERT INTO `")
)

func (d *tableDigests) line(l []byte) {
	switch {
	case bytes.HasPrefix(l, dumpingData):
		name, _, _ := bytes.Cut(l[len(dumpingData):], []byte("`"))
		d.current = string(name)
		if d.sums[d.current] == nil {
			d.sums[d.current] = sha256.New()
		}
	case d.current != "" && bytes.HasPrefix(l, insertInto):
		d.sums[d.current].Write(l)
	}
}

func (d *tableDigests) result() map[string]string {
	out := map[string]string{}
	for t, h := range d.sums {
		out[t] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// VerifyResult is what a restore test proved.
type VerifyResult struct {
	File     string    `json:"file"`
	Time     time.Time `json:"time"`
	Seconds  float64   `json:"seconds"`
	OK       bool      `json:"ok"`
	Tables   int       `json:"tables"`
	Rows     int64     `json:"rows"`
	Problem  string    `json:"problem,omitempty"`
	Database string    `json:"database"`
}

// VerifyRestore proves a backup restores: it loads the backup into ScratchDatabase on the
// server db reaches, dumps that database again as a backup does, and compares, table by
// table, the digest of the data statements with the backup's own; then drops the scratch
// database. A damaged or truncated backup, a restore that fails or loses a row, and a table
// whose data comes back different are each a failed result naming the table.
func VerifyRestore(ctx context.Context, db config.Database, file string, keys openpgp.EntityList) (VerifyResult, error) {
	start := time.Now()
	res := VerifyResult{File: file, Time: start.UTC(), Database: db.Name}
	fail := func(format string, args ...any) (VerifyResult, error) {
		res.Problem = fmt.Sprintf(format, args...)
		res.Seconds = time.Since(start).Seconds()
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
	defaults, cleanup, err := mariadb.DefaultsFile("", server)
	if err != nil {
		return res, fmt.Errorf("backup verify: %w", err)
	}
	defer cleanup()

	// backup -> [decrypt] -> gunzip -> digests + mariadb scratch
	r, err := OpenSQL(file, keys)
	if err != nil {
		return fail("%v", err)
	}
	defer r.Close()
	fromFile := newTableDigests()
	end := &tail{}
	load := exec.CommandContext(ctx, "mariadb", "--defaults-extra-file="+defaults, "--batch", ScratchDatabase)
	stdin, err := load.StdinPipe()
	if err != nil {
		return res, err
	}
	var loadErr bytes.Buffer
	load.Stdout, load.Stderr = io.Discard, &loadErr
	if err := load.Start(); err != nil {
		return res, fmt.Errorf("backup verify: mariadb: %w", err)
	}
	_, readErr := io.Copy(io.MultiWriter(stdin, fromFile, end), r)
	if readErr != nil {
		load.Process.Kill()
		load.Wait()
		where := "before the first table"
		if fromFile.current != "" {
			where = "in table " + fromFile.current
		}
		return fail("the backup is damaged or incomplete: reading stopped %s (%v)", where, readErr)
	}
	stdin.Close()
	if err := load.Wait(); err != nil {
		return fail("restoring it failed in table %s: %s", fromFile.current, oneLine(loadErr.String()))
	}
	if !bytes.Contains(end.buf, completed) {
		return fail("the backup is incomplete: it stops in table %s without mariadb-dump's %q line", fromFile.current, completed)
	}

	// The restored copy, dumped as a backup is, must hold the same data, table by table.
	again := newTableDigests()
	dump := exec.CommandContext(ctx, "mariadb-dump", "--defaults-extra-file="+defaults, "--single-transaction",
		"--routines", "--triggers", "--events", "--hex-blob", "--", ScratchDatabase)
	var dumpErr bytes.Buffer
	dump.Stdout, dump.Stderr = again, &dumpErr
	if err := dump.Run(); err != nil {
		return res, fmt.Errorf("backup verify: dump the restored copy: %v: %s", err, oneLine(dumpErr.String()))
	}
	want, got := fromFile.result(), again.result()
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
		return fail("restored data differs from the backup in table(s) %s", strings.Join(differ, ", "))
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
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return fsutil.WriteAtomic(filepath.Join(stateDir, VerifyRecord), append(data, '\n'), 0o600, nil)
}

// LastVerify returns the last restore test (ok false: none recorded).
func LastVerify(stateDir string) (VerifyResult, bool, error) {
	var res VerifyResult
	data, err := os.ReadFile(filepath.Join(stateDir, VerifyRecord))
	if errors.Is(err, fs.ErrNotExist) {
		return res, false, nil
	}
	if err != nil {
		return res, false, err
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return res, false, fmt.Errorf("%s is corrupt: %w", VerifyRecord, err)
	}
	return res, true, nil
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
