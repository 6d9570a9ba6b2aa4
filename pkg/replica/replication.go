package replica

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/redact"
	"github.com/emrkit/emrkit/pkg/step"
)

// startTimeout bounds waiting for both replication threads to run after START SLAVE.
const startTimeout = 30 * time.Second

// slaveStatus is the intermediate's SHOW SLAVE STATUS by column, nil when no replication is
// configured.
func slaveStatus(ctx context.Context, q queryer) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, fmt.Errorf("SHOW SLAVE STATUS: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		st[c] = vals[i].String
	}
	return st, rows.Err()
}

// broken reports a replication thread stopped by an error: the replica must be seeded again.
func broken(st map[string]string) string {
	if st["Slave_SQL_Running"] == "No" && st["Last_SQL_Errno"] != "0" && st["Last_SQL_Errno"] != "" {
		return oneLine(st["Last_SQL_Error"])
	}
	if st["Slave_IO_Running"] == "No" && st["Last_IO_Errno"] != "0" && st["Last_IO_Errno"] != "" {
		return oneLine(st["Last_IO_Error"])
	}
	return ""
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

type replicationDesired struct {
	Socket string   `json:"socket"`
	User   string   `json:"user"`
	Host   string   `json:"host"`
	Tables []string `json:"tables"` // db.table
}

type replicationBefore struct {
	Configured bool   `json:"configured"`
	MasterUser string `json:"master_user,omitempty"`
}

// replicationStep seeds the intermediate and makes it replicate from the primary.
type replicationStep struct {
	r     Replica
	env   Env
	since string
}

func (s replicationStep) Kind() string   { return ReplicationKind }
func (s replicationStep) Target() string { return ServiceName + "#replication" }
func (s replicationStep) ID() string     { return ReplicationKind + ":" + s.Target() }
func (s replicationStep) Since() string  { return s.since }
func (s replicationStep) Describe() string {
	return fmt.Sprintf("portal replica replicating %d tables of %s from MariaDB (%s)", len(s.r.Tables), s.r.Database, strings.Join(s.r.Tables, ", "))
}

// doTables is the running filter as a sorted list.
func doTables(ctx context.Context, db *sql.DB) ([]string, error) {
	var v string
	if err := db.QueryRowContext(ctx, "SELECT @@global.replicate_do_table").Scan(&v); err != nil {
		return nil, fmt.Errorf("read the portal replica's table filter: %w", err)
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Check is true while the intermediate replicates from the primary as SourceUser with GTID,
// filters exactly the portal tables, holds them all, and no thread stopped on an error. A
// replica stopped by an admin (no error) is left alone.
func (s replicationStep) Check(ctx context.Context) (bool, error) {
	pdb, err := s.r.Primary.Get(ctx)
	if err != nil {
		return false, err
	}
	ps, err := readPrimary(ctx, pdb)
	if err != nil {
		return false, err
	}
	db, err := openIntermediate(ctx, s.env.socket())
	if err != nil {
		return false, err
	}
	defer db.Close()
	st, err := slaveStatus(ctx, db)
	if err != nil || st == nil {
		return false, err
	}
	if st["Master_Host"] != "127.0.0.1" || st["Master_Port"] != strconv.Itoa(ps.port) || st["Master_User"] != SourceUser ||
		st["Using_Gtid"] != "Slave_Pos" || broken(st) != "" {
		return false, nil
	}
	have, err := doTables(ctx, db)
	if err != nil || !slices.Equal(have, s.r.WantTables()) {
		return false, err
	}
	tables, err := replicaTables(ctx, db, s.r.Database)
	if err != nil {
		return false, err
	}
	want := slices.Clone(s.r.Tables)
	slices.Sort(want)
	return slices.Equal(tables, want), nil
}

// replicaTables lists the tables of database on the intermediate, sorted.
func replicaTables(ctx context.Context, db *sql.DB, database string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", database)
	if err != nil {
		return nil, fmt.Errorf("portal replica: list the tables of %s: %w", database, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.Sort(out) // information_schema's order depends on the collation
	return out, rows.Err()
}

func (s replicationStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	db, err := openIntermediate(ctx, s.env.socket())
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	st, err := slaveStatus(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	b := replicationBefore{Configured: st != nil}
	if st != nil {
		b.MasterUser = st["Master_User"]
	}
	dj, err := json.Marshal(replicationDesired{Socket: s.env.socket(), User: SourceUser, Host: "127.0.0.1", Tables: s.r.WantTables()})
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return dj, bj, err
}

// Apply stops replication, sets the filter, seeds the portal tables from the primary, points
// the intermediate at the primary and starts it, waiting until both threads run.
func (s replicationStep) Apply(ctx context.Context, _ json.RawMessage) error {
	pdb, err := s.r.Primary.Get(ctx)
	if err != nil {
		return err
	}
	ps, err := readPrimary(ctx, pdb)
	if err != nil {
		return err
	}
	pw, ok, err := readPassword(s.env.sourcePassword())
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is missing: the replication account's password; run emrkit apply again to create it", s.env.sourcePassword())
	}
	db, err := openIntermediate(ctx, s.env.socket())
	if err != nil {
		return err
	}
	defer db.Close()
	// what names a statement in errors: CHANGE MASTER's text holds the password.
	run := func(what, stmt string) error {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("portal replica: %s: %w", what, err)
		}
		return nil
	}
	if err := run("STOP SLAVE", "STOP SLAVE"); err != nil {
		return err
	}
	have, err := doTables(ctx, db)
	if err != nil {
		return err
	}
	if want := s.r.WantTables(); !slices.Equal(have, want) {
		// The option file says the same for the next start (names validated: no quotes).
		if err := run("set the table filter", "SET GLOBAL replicate_do_table = '"+strings.Join(want, ",")+"'"); err != nil {
			return err
		}
	}
	if err := s.seed(ctx, pdb, db); err != nil {
		return err
	}
	// A table no longer in portal.tables leaves the intermediate, and (binary-logged) the
	// offsite replica while its own filter still names it.
	tables, err := replicaTables(ctx, db, s.r.Database)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if slices.Contains(s.r.Tables, t) {
			continue
		}
		qdb, _ := mariadb.QuoteIdentifier(s.r.Database)
		qt, err := mariadb.QuoteIdentifier(t)
		if err != nil {
			return fmt.Errorf("portal replica: table %s.%s is no portal table and has a name emrkit does not handle; drop it yourself", s.r.Database, t)
		}
		if err := run("drop "+s.r.Database+"."+t+" (no longer a portal table)", "DROP TABLE IF EXISTS "+qdb+"."+qt); err != nil {
			return err
		}
	}
	if err := run("CHANGE MASTER TO the primary", fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', "+
		"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=10", ps.port, SourceUser, pw)); err != nil {
		return err
	}
	if err := run("START SLAVE", "START SLAVE"); err != nil {
		return err
	}
	return waitRunning(ctx, db)
}

var charsetRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// seed creates the database on the intermediate as the primary has it and loads the portal
// tables into it: mariadb-dump --single-transaction --gtid --master-data=1 from the primary
// (credentials in an option file), piped into the intermediate's mariadb client as root.
// The dump sets gtid_slave_pos to the position it was taken at.
func (s replicationStep) seed(ctx context.Context, pdb, db *sql.DB) error {
	var cs, coll string
	if err := pdb.QueryRowContext(ctx, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
		s.r.Database).Scan(&cs, &coll); err != nil {
		return fmt.Errorf("read database %s's character set: %w", s.r.Database, err)
	}
	qdb, err := mariadb.QuoteIdentifier(s.r.Database)
	if err != nil {
		return err
	}
	create := "CREATE DATABASE IF NOT EXISTS " + qdb
	if charsetRE.MatchString(cs) && charsetRE.MatchString(coll) {
		create += " CHARACTER SET " + cs + " COLLATE " + coll
	}
	if _, err := db.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("portal replica: create database %s: %w", s.r.Database, err)
	}
	dumpPath, err := lookTool("mariadb-dump", "mariadb-client")
	if err != nil {
		return err
	}
	clientPath, err := lookTool("mariadb", "mariadb-client")
	if err != nil {
		return err
	}
	src := s.r.Primary.Config
	src.Name = ""
	dump, done, err := mariadb.Command(ctx, src, dumpPath, append([]string{
		"--single-transaction", "--gtid", "--master-data=1", "--skip-triggers", "--no-tablespaces",
		s.r.Database}, s.r.Tables...)...)
	if err != nil {
		return err
	}
	defer done()
	load := exec.CommandContext(ctx, clientPath,
		"--no-defaults", // must be first
		"--protocol=socket", "--socket="+s.env.socket(), "--user=root", "--database="+s.r.Database)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	var dumpErr, loadErr bytes.Buffer
	dump.Stdout, dump.Stderr = pw, &limited{w: &dumpErr}
	load.Stdin, load.Stdout, load.Stderr = pr, &limited{w: &loadErr}, &limited{w: &loadErr}
	if err := load.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("portal replica: start mariadb: %w", err)
	}
	pr.Close()
	if err := dump.Start(); err != nil {
		pw.Close()
		load.Wait()
		return fmt.Errorf("portal replica: start mariadb-dump: %w", err)
	}
	pw.Close()
	derr := dump.Wait()
	lerr := load.Wait()
	if derr != nil {
		return fmt.Errorf("portal replica: seed from MariaDB: mariadb-dump: %v: %s", derr, redact.SQLText(lastLines(dumpErr.String(), 3)))
	}
	if lerr != nil {
		// The portal's tables are patients' records: the client's message loses its values.
		return fmt.Errorf("portal replica: seed: loading the dump: %v: %s", lerr, redact.SQLText(lastLines(loadErr.String(), 3)))
	}
	return nil
}

// limited keeps the first 64 KiB written to it: a tool's error output, bounded.
type limited struct{ w *bytes.Buffer }

func (l *limited) Write(p []byte) (int, error) {
	if room := 64<<10 - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

var _ io.Writer = (*limited)(nil)

// waitRunning waits until both replication threads run; an error either reports is the
// error.
func waitRunning(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(startTimeout)
	for {
		st, err := slaveStatus(ctx, db)
		if err != nil {
			return err
		}
		if st == nil {
			return errors.New("portal replica: replication is not configured after CHANGE MASTER")
		}
		if st["Slave_IO_Running"] == "Yes" && st["Slave_SQL_Running"] == "Yes" {
			return nil
		}
		if e := firstError(st); e != "" {
			return fmt.Errorf("portal replica: replication does not run: %s", e)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("portal replica: replication threads not running after %v (IO %s, SQL %s)", startTimeout, st["Slave_IO_Running"], st["Slave_SQL_Running"])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func firstError(st map[string]string) string {
	for _, k := range []string{"Last_IO_Error", "Last_SQL_Error", "Last_Error"} {
		if e := oneLine(st[k]); e != "" {
			return e
		}
	}
	return ""
}

// replicationUndoer stops replication and forgets the primary while the intermediate still
// replicates as SourceUser.
type replicationUndoer struct{}

func (replicationUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[replicationDesired, replicationBefore](e)
	if err != nil {
		return 0, "", err
	}
	if !safePath.MatchString(d.Socket) {
		return 0, "", fmt.Errorf("journal entry %s: bad socket %q", e.ID, d.Socket)
	}
	db, err := openIntermediate(ctx, d.Socket)
	if _, deferred := step.IsDeferred(err); deferred {
		return step.Skipped, "the portal replica server is not running; its replication settings go with its data directory", nil
	}
	if err != nil {
		return 0, "", err
	}
	defer db.Close()
	st, err := slaveStatus(ctx, db)
	switch {
	case err != nil:
		return 0, "", err
	case st == nil:
		return step.AlreadyBefore, "", nil
	case st["Master_User"] != d.User || st["Master_Host"] != d.Host:
		if b.Configured && st["Master_User"] == b.MasterUser {
			return step.AlreadyBefore, "", nil
		}
		return step.Kept, "the portal replica replicates as " + st["Master_User"] + " from " + st["Master_Host"] + " now (changed since)", nil
	}
	for _, stmt := range []string{"STOP SLAVE", "RESET SLAVE ALL"} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return 0, "", fmt.Errorf("portal replica: %s: %w", stmt, err)
		}
	}
	return step.Restored, "", nil
}

func (replicationUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[replicationDesired, replicationBefore](e)
	if err != nil {
		return false, err
	}
	db, err := openIntermediate(ctx, d.Socket)
	if err != nil {
		return false, err
	}
	defer db.Close()
	st, err := slaveStatus(ctx, db)
	if err != nil || st == nil {
		return false, err
	}
	have, err := doTables(ctx, db)
	if err != nil {
		return false, err
	}
	return st["Master_User"] == d.User && st["Master_Host"] == d.Host && broken(st) == "" && slices.Equal(have, d.Tables), nil
}

// Health is the intermediate's replication as SHOW SLAVE STATUS has it.
type Health struct {
	IORunning, SQLRunning bool
	// SecondsBehind is Seconds_Behind_Master, -1 when unknown (a thread is not running).
	SecondsBehind int
	// DoTables is the running filter (replicate_do_table), db.table, sorted.
	DoTables []string
	// Error is the last replication error in one line, "" when there is none.
	Error string
}

// Running reports whether both replication threads run.
func (h Health) Running() bool { return h.IORunning && h.SQLRunning }

// ReadHealth reads the intermediate's replication state, for `emrkit portal status` and
// doctor. A server that is not running, or replication not set up, is an error.
func ReadHealth(ctx context.Context, env Env) (Health, error) {
	h := Health{SecondsBehind: -1}
	if _, err := env.check(); err != nil {
		return h, err
	}
	db, err := openIntermediate(ctx, env.socket())
	if d, ok := step.IsDeferred(err); ok {
		return h, errors.New(d.Reason)
	}
	if err != nil {
		return h, err
	}
	defer db.Close()
	st, err := slaveStatus(ctx, db)
	if err != nil {
		return h, fmt.Errorf("portal replica: %w", err)
	}
	if st == nil {
		return h, errors.New("portal replica: replication is not set up (run emrkit apply)")
	}
	if v := st["Seconds_Behind_Master"]; v != "" {
		if h.SecondsBehind, err = strconv.Atoi(v); err != nil {
			return Health{SecondsBehind: -1}, fmt.Errorf("portal replica: Seconds_Behind_Master %q: %w", v, err)
		}
	}
	h.IORunning, h.SQLRunning = st["Slave_IO_Running"] == "Yes", st["Slave_SQL_Running"] == "Yes"
	h.Error = firstError(st)
	if h.DoTables, err = doTables(ctx, db); err != nil {
		return h, err
	}
	return h, nil
}

// WantTables is the filter the intermediate must run for r, db.table, sorted.
func (r Replica) WantTables() []string {
	q := r.qualified()
	slices.Sort(q)
	return q
}
