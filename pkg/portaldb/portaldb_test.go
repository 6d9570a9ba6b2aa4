package portaldb

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/secretfile"

	"github.com/go-sql-driver/mysql"

	"github.com/emrkit/emrkit/internal/openemrfixture"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

func TestHideSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"GRANT USAGE ON *.* TO `u`@`h` IDENTIFIED BY PASSWORD '*ABC' WITH MAX_QUERIES_PER_HOUR 1": "GRANT USAGE ON *.* TO `u`@`h` IDENTIFIED BY PASSWORD <hidden> WITH MAX_QUERIES_PER_HOUR 1",
		"CREATE USER `u`@`h` IDENTIFIED VIA unix_socket OR mysql_native_password USING '*AB'":     "CREATE USER `u`@`h` IDENTIFIED VIA unix_socket OR mysql_native_password USING <hidden>",
		"GRANT SELECT ON `db`.`t` TO `u`@`h`":                                                     "GRANT SELECT ON `db`.`t` TO `u`@`h`",
	} {
		if got := hideSecrets(in); got != want {
			t.Errorf("hideSecrets(%q) = %q, want %q", in, got, want)
		}
	}
}

// env is one private MariaDB (socket for root, TCP 127.0.0.1 for the portal account, binary
// log on) with the portal fixture in database "openemr", shared by the subtests in turn.
type env struct {
	srv  *mariadbtest.Server
	root *sql.DB
	port int
}

func TestPortalDB(t *testing.T) {
	port := mariadbtest.FreePort(t)
	srv := mariadbtest.StartWith(t, mariadbtest.Options{Port: port, Args: []string{"--log-bin=binlog", "--server-id=1"}})
	srv.CreateDatabase(t, "openemr")
	root := srv.DB(t, "openemr")
	for stmt := range strings.SplitSeq(openemrfixture.PortalSQL, ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := root.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("fixture: %v\n%s", err, stmt)
		}
	}
	e := &env{srv: srv, root: root, port: port}
	// In turn: each leaves the server's accounts as it found them.
	t.Run("ApplyLoginUndo", e.testApplyLoginUndo)
	t.Run("PreExistingAccount", e.testPreExisting)
	t.Run("AdminPassword", e.testAdminPassword)
	t.Run("Drift", e.testDrift)
	t.Run("CrashSafety", e.testCrash)
	t.Run("BadInput", e.testBadInput)
}

// fixture is a step for account user@127.0.0.1 with its password file in a new temp dir.
func (e *env) step(t *testing.T, user string) UserStep {
	return UserStep{
		DB:           &mariadb.Shared{Config: e.srv.Root("openemr")},
		Database:     "openemr",
		User:         user,
		Host:         "127.0.0.1",
		Tables:       config.Portal{}.TableNames(),
		PasswordFile: filepath.Join(t.TempDir(), "portal-db.password"),
		SinceVersion: "0.6.0",
	}
}

func (e *env) runner(t *testing.T, s UserStep) (*step.Runner, *journal.Journal, string) {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &step.Runner{Journal: j, Undoers: Undoers(s.DB), Out: &bytes.Buffer{}}, j, filepath.Join(dir, "journal.json")
}

func (e *env) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := e.root.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func (e *env) dropUser(t *testing.T, user string) {
	t.Cleanup(func() { e.root.Exec("DROP USER IF EXISTS '" + user + "'@'127.0.0.1'") })
}

// grantTables dumps every account and grant table of the server, sorted, so two dumps
// compare as text. noPasswordTime leaves out when a password was last set (CREATE OR
// REPLACE USER puts the old hash back, but sets it now).
func (e *env) grantTables(t *testing.T, noPasswordTime bool) string {
	t.Helper()
	priv := "Priv"
	if noPasswordTime {
		priv = "JSON_REMOVE(Priv, '$.password_last_changed')"
	}
	var b strings.Builder
	for _, q := range []string{
		"SELECT Host, User, " + priv + " FROM mysql.global_priv ORDER BY 1, 2",
		"SELECT * FROM mysql.db ORDER BY 1, 2, 3",
		"SELECT * FROM mysql.tables_priv ORDER BY 1, 2, 3, 4",
		"SELECT * FROM mysql.columns_priv ORDER BY 1, 2, 3, 4, 5",
		"SELECT * FROM mysql.procs_priv ORDER BY 1, 2, 3, 4, 5",
		"SELECT * FROM mysql.roles_mapping ORDER BY 1, 2, 3",
		"SELECT * FROM mysql.proxies_priv ORDER BY 1, 2, 3, 4",
	} {
		fmt.Fprintf(&b, "-- %s\n", q)
		rows, err := e.root.QueryContext(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&b, "%q\t", v)
			}
			b.WriteString("\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return b.String()
}

var fixtureTables = []string{"patient_access_onsite", "patient_data", "openemr_postcalendar_events", "users_secure", "pnotes"}

func (e *env) checksums(t *testing.T) []string {
	var out []string
	for _, tbl := range fixtureTables {
		out = append(out, tbl+"="+e.srv.Checksum(t, "openemr", tbl))
	}
	return out
}

// login opens database openemr over TCP 127.0.0.1 as user, with the password in file.
func (e *env) login(t *testing.T, user, file string) (*sql.DB, error) {
	t.Helper()
	db, err := mariadb.Open(t.Context(), config.Database{Host: "127.0.0.1", Port: config.P(e.port), Name: "openemr", User: user, PasswordFile: file})
	if err == nil {
		t.Cleanup(func() { db.Close() })
	}
	return db, err
}

func (e *env) loginWith(t *testing.T, user, password string) error {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := e.login(t, user, f)
	if err == nil {
		db.Close()
	}
	return err
}

// denied asserts err is MariaDB refusing a privilege.
func denied(t *testing.T, what string, err error) {
	t.Helper()
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		t.Errorf("%s: want a MariaDB access-denied error, got %v", what, err)
		return
	}
	if !slices.Contains([]uint16{1142, 1143, 1044, 1045, 1227, 1370}, me.Number) || !strings.Contains(me.Message, "denied") {
		t.Errorf("%s: want access denied, got %d %s", what, me.Number, me.Message)
	}
}

// sameGrants puts SHOW GRANTS lines in an order of their own: the server prints grants of
// one kind, and the columns of a column grant, in hash order, which differs between two
// accounts with the same grants.
func sameGrants(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if open := strings.Index(l, " ("); open >= 0 && strings.HasPrefix(l, "GRANT ") {
			if end := strings.Index(l[open:], ")"); end > 0 {
				cols := strings.Split(l[open+2:open+end], ", ")
				slices.Sort(cols)
				l = l[:open+2] + strings.Join(cols, ", ") + l[open+end:]
			}
		}
		out[i] = l
	}
	slices.Sort(out)
	return out
}

func holds(t *testing.T, s UserStep, e journal.Entry) bool {
	t.Helper()
	ok, err := Undoers(s.DB)[Kind].Holds(t.Context(), e)
	if err != nil {
		t.Fatalf("holds: %v", err)
	}
	return ok
}

func undo(t *testing.T, s UserStep, e journal.Entry) (step.Outcome, string) {
	t.Helper()
	o, detail, err := Undoers(s.DB)[Kind].Undo(t.Context(), e)
	if err != nil {
		t.Fatalf("undo: %v", err)
	}
	return o, detail
}

func check(t *testing.T, s UserStep) bool {
	t.Helper()
	ok, err := s.Check(t.Context())
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return ok
}

func entry(t *testing.T, j *journal.Journal, s UserStep) journal.Entry {
	t.Helper()
	en, ok := j.Get(s.ID())
	if !ok {
		t.Fatalf("no journal entry %s", s.ID())
	}
	return en
}

func (e *env) accountExists(t *testing.T, user string) bool {
	var n int
	if err := e.root.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM mysql.global_priv WHERE User = ? AND Host = '127.0.0.1'", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func (e *env) testApplyLoginUndo(t *testing.T) {
	ctx := t.Context()
	s := e.step(t, "emrkit_portal")
	e.dropUser(t, s.User)
	r, j, journalFile := e.runner(t, s)
	grantsBefore, sumsBefore := e.grantTables(t, false), e.checksums(t)
	e.exec(t, "SET GLOBAL log_output = 'TABLE'", "TRUNCATE mysql.general_log", "SET GLOBAL general_log = 1")

	if s.ID() != "portal.dbuser:emrkit_portal@127.0.0.1" {
		t.Fatalf("ID %s", s.ID())
	}
	if check(t, s) {
		t.Fatal("in sync before apply")
	}
	rep, err := r.Apply(ctx, []step.Step{s})
	if err != nil || rep.Applied != 1 {
		t.Fatalf("apply: %+v %v", rep, err)
	}
	if !check(t, s) {
		t.Fatal("not in sync after apply")
	}
	applied := e.grantTables(t, false)
	rep, err = r.Apply(ctx, []step.Step{s})
	if err != nil || rep.Applied+rep.Finished != 0 || rep.Unchanged != 1 {
		t.Fatalf("re-apply: %+v %v", rep, err)
	}
	if again := e.grantTables(t, false); again != applied {
		t.Fatalf("re-apply changed the grant tables:\n%s\nthen\n%s", applied, again)
	}

	// The password: 0600, generated, and nowhere else (journal, SQL text, binary log).
	fi, err := os.Stat(s.PasswordFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(s.PasswordFile)
	pw := strings.TrimSuffix(string(data), "\n")
	if len(pw) != 32 || strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Fatalf("password file holds %d characters", len(pw))
	}
	jdata, err := os.ReadFile(journalFile)
	if err != nil {
		t.Fatal(err)
	}
	en := entry(t, j, s)
	if bytes.Contains(jdata, []byte(pw)) || bytes.Contains(jdata, []byte(mariadb.NativePasswordHash(pw))) ||
		bytes.Contains(en.Desired, []byte(pw)) || bytes.Contains(en.Before, []byte(pw)) {
		t.Fatal("the password or its hash is in the journal")
	}
	var d desired
	if err := json.Unmarshal(en.Desired, &d); err != nil || d.PasswordFile != s.PasswordFile || d.User != s.User || len(d.Privileges) != 6 {
		t.Fatalf("desired: %s %v", en.Desired, err)
	}
	e.exec(t, "SET GLOBAL general_log = 0")
	var logged int
	if err := e.root.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.general_log WHERE INSTR(argument, ?) > 0", pw).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	var statements int
	e.root.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.general_log WHERE argument LIKE 'CREATE USER IF NOT EXISTS%'").Scan(&statements)
	if logged != 0 || statements == 0 {
		t.Fatalf("general log: password in %d statements; %d CREATE USER statements", logged, statements)
	}
	binlogs, _ := filepath.Glob(filepath.Join(e.srv.Dir(), "data", "binlog.0*"))
	if len(binlogs) == 0 {
		t.Fatal("no binary log")
	}
	for _, f := range binlogs {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(pw)) {
			t.Fatalf("password in binary log %s", f)
		}
	}

	lines, err := Grants(ctx, e.root, s.User, s.Host)
	if err != nil || len(lines) != 4 || !slices.Contains(lines, "GRANT SELECT, INSERT, UPDATE ON `openemr`.`patient_access_onsite` TO `emrkit_portal`@`127.0.0.1`") ||
		!slices.Contains(lines, "GRANT USAGE ON *.* TO `emrkit_portal`@`127.0.0.1` IDENTIFIED BY PASSWORD <hidden>") ||
		strings.Contains(strings.Join(lines, "\n"), mariadb.NativePasswordHash(pw)) {
		t.Fatalf("grants: %q %v", lines, err)
	}
	if none, err := Grants(ctx, e.root, "nobody_here", "127.0.0.1"); none != nil || err != nil {
		t.Fatalf("grants of no account: %q %v", none, err)
	}

	// What the account may do, asked of the server itself over TCP.
	p, err := e.login(t, s.User, s.PasswordFile)
	if err != nil {
		t.Fatalf("portal login: %v", err)
	}
	for _, tbl := range s.Tables {
		var n int
		if err := p.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tbl).Scan(&n); err != nil || n == 0 {
			t.Errorf("portal SELECT %s: %d rows, %v", tbl, n, err)
		}
	}
	tx, err := p.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO patient_access_onsite (pid, portal_username, portal_pwd) VALUES (99, 'new', 'x')"); err != nil {
		t.Errorf("portal INSERT: %v", err)
	}
	if res, err := tx.ExecContext(ctx, "UPDATE patient_access_onsite SET portal_onetime = NULL, portal_pwd_status = 0 WHERE pid = 1"); err != nil {
		t.Errorf("portal UPDATE: %v", err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Errorf("portal UPDATE changed %d rows", n)
	}
	tx.Rollback()
	for what, stmt := range map[string]string{
		"DELETE patient_access_onsite": "DELETE FROM patient_access_onsite WHERE pid = 1",
		"UPDATE patient_data":          "UPDATE patient_data SET fname = 'x' WHERE pid = 1",
		"INSERT patient_data":          "INSERT INTO patient_data (pid) VALUES (77)",
		"SELECT users_secure":          "SELECT * FROM users_secure",
		"SELECT pnotes":                "SELECT * FROM pnotes",
		"CREATE TABLE":                 "CREATE TABLE evil (a INT)",
		"DROP TABLE":                   "DROP TABLE patient_data",
		"SELECT mysql.user":            "SELECT * FROM mysql.user",
		"GRANT":                        "GRANT SELECT ON openemr.pnotes TO 'emrkit_portal'@'127.0.0.1'",
		"CREATE USER":                  "CREATE USER 'x'@'%'",
	} {
		_, err := p.ExecContext(ctx, stmt)
		denied(t, what, err)
	}
	if err := e.loginWith(t, s.User, pw+"x"); !errors.Is(err, mariadb.ErrAccessDenied) {
		t.Errorf("login with a wrong password: %v", err)
	}
	p.Close()

	// Undo: the grant tables as they were, the file gone, the data untouched.
	if !holds(t, s, entry(t, j, s)) {
		t.Fatal("holds: false right after apply")
	}
	rep, err = r.Revert(ctx, func(journal.Entry) bool { return true })
	if err != nil || rep.Undone != 1 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if after := e.grantTables(t, false); after != grantsBefore {
		t.Fatalf("grant tables after undo differ:\nbefore\n%s\nafter\n%s", grantsBefore, after)
	}
	if _, err := os.Stat(s.PasswordFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("password file after undo: %v", err)
	}
	if sums := e.checksums(t); !slices.Equal(sums, sumsBefore) {
		t.Fatalf("fixture data changed: %v, was %v", sums, sumsBefore)
	}
	// Undo again (the entry as journaled before): nothing there, nothing to do.
	if o, _ := undo(t, s, en); o != step.AlreadyBefore {
		t.Fatalf("second undo: %v", o)
	}
}

func (e *env) testPreExisting(t *testing.T) {
	ctx := t.Context()
	s := e.step(t, "pre_portal")
	e.dropUser(t, s.User)
	t.Cleanup(func() { e.root.Exec("DROP ROLE IF EXISTS clinic_reader") })
	acct := "'pre_portal'@'127.0.0.1'"
	e.exec(t,
		"CREATE ROLE clinic_reader", "GRANT SELECT ON openemr.users_secure TO clinic_reader",
		"CREATE PROCEDURE openemr.portal_proc() SELECT 1",
		"CREATE USER "+acct+" IDENTIFIED BY 'own password' WITH MAX_QUERIES_PER_HOUR 1000",
		"GRANT SELECT ON openemr.pnotes TO "+acct,
		"GRANT SELECT, DELETE ON openemr.patient_access_onsite TO "+acct+" WITH GRANT OPTION",
		"GRANT SELECT (fname, lname) ON openemr.patient_data TO "+acct,
		"GRANT SHOW VIEW ON openemr.* TO "+acct,
		"GRANT EXECUTE ON PROCEDURE openemr.portal_proc TO "+acct,
		"GRANT PROXY ON 'root'@'%' TO "+acct,
		"GRANT clinic_reader TO "+acct,
		"SET DEFAULT ROLE clinic_reader FOR "+acct,
	)
	t.Cleanup(func() { e.root.Exec("DROP PROCEDURE IF EXISTS openemr.portal_proc") })
	createBefore, _ := showCreateUser(ctx, e.root, s.User, s.Host)
	showBefore, _ := showGrants(ctx, e.root, s.User, s.Host)
	grantsBefore := e.grantTables(t, true)
	r, j, _ := e.runner(t, s)

	rep, err := r.Apply(ctx, []step.Step{s})
	if err != nil || rep.Applied != 1 {
		t.Fatalf("apply: %+v %v", rep, err)
	}
	if !check(t, s) {
		t.Fatal("not in sync after apply")
	}
	a, err := readAccount(ctx, e.root, s.User, s.Host)
	want := desiredPrivileges("openemr", s.Tables, config.PortalWriteTable)
	if err != nil || !slices.Equal(a.privileges, want) || a.defaultRole != "" {
		t.Fatalf("privileges after apply: %q (default role %q) %v, want %q", a.privileges, a.defaultRole, err, want)
	}
	if err := e.loginWith(t, s.User, "own password"); !errors.Is(err, mariadb.ErrAccessDenied) {
		t.Fatalf("old password still logs in: %v", err)
	}
	p, err := e.login(t, s.User, s.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.ExecContext(ctx, "SELECT * FROM pnotes")
	denied(t, "SELECT pnotes after apply", err)
	_, err = p.ExecContext(ctx, "SET ROLE clinic_reader")
	if err == nil {
		t.Error("SET ROLE clinic_reader works after apply")
	}
	p.Close()
	var b before
	if err := json.Unmarshal(entry(t, j, s).Before, &b); err != nil || !b.Existed || b.CreateUser != createBefore || !slices.Equal(b.Grants, showBefore) {
		t.Fatalf("before: %+v %v", b, err)
	}

	rep, err = r.Revert(ctx, func(journal.Entry) bool { return true })
	if err != nil || rep.Undone != 1 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	createAfter, _ := showCreateUser(ctx, e.root, s.User, s.Host)
	showAfter, _ := showGrants(ctx, e.root, s.User, s.Host)
	if createAfter != createBefore || !slices.Equal(sameGrants(showAfter), sameGrants(showBefore)) {
		t.Fatalf("account after undo:\n%s\n%s\nwas\n%s\n%s", createAfter, strings.Join(showAfter, "\n"), createBefore, strings.Join(showBefore, "\n"))
	}
	if after := e.grantTables(t, true); after != grantsBefore {
		t.Fatalf("grant tables after undo differ:\nbefore\n%s\nafter\n%s", grantsBefore, after)
	}
	if err := e.loginWith(t, s.User, "own password"); err != nil {
		t.Fatalf("own password after undo: %v", err)
	}
	if _, err := os.Stat(s.PasswordFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("password file after undo: %v", err)
	}
}

// An admin who wrote the password file first keeps their password: emrkit uses it, never
// journals it, and leaves the file on undo.
func (e *env) testAdminPassword(t *testing.T) {
	ctx := t.Context()
	s := e.step(t, "admin_portal")
	e.dropUser(t, s.User)
	const pw = "Admin-Chosen 'password' #1"
	if err := os.WriteFile(s.PasswordFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, j, journalFile := e.runner(t, s)
	if _, err := r.Apply(ctx, []step.Step{s}); err != nil || !check(t, s) {
		t.Fatalf("apply: %v", err)
	}
	jdata, _ := os.ReadFile(journalFile)
	for _, secret := range []string{pw, mariadb.NativePasswordHash(pw), strings.TrimPrefix(mariadb.NativePasswordHash(pw), "*")} {
		if bytes.Contains(jdata, []byte(secret)) {
			t.Fatalf("journal holds %q", secret)
		}
	}
	if err := e.loginWith(t, s.User, pw); err != nil {
		t.Fatalf("login with the admin's password: %v", err)
	}
	var b before
	json.Unmarshal(entry(t, j, s).Before, &b)
	if b.Existed || !b.PasswordFileExisted {
		t.Fatalf("before: %+v", b)
	}
	rep, err := r.Revert(ctx, func(journal.Entry) bool { return true })
	if err != nil || rep.Undone != 1 || e.accountExists(t, s.User) {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if data, err := os.ReadFile(s.PasswordFile); err != nil || string(data) != pw+"\n" {
		t.Fatalf("the admin's password file after undo: %q %v", data, err)
	}
}

func (e *env) testDrift(t *testing.T) {
	ctx := t.Context()
	s := e.step(t, "drift_portal")
	e.dropUser(t, s.User)
	r, j, _ := e.runner(t, s)
	if _, err := r.Apply(ctx, []step.Step{s}); err != nil {
		t.Fatal(err)
	}
	en := entry(t, j, s)
	e.exec(t, "GRANT DELETE ON openemr.patient_access_onsite TO 'drift_portal'@'127.0.0.1'")
	if holds(t, s, en) || check(t, s) {
		t.Fatal("holds or in sync with DELETE granted since")
	}
	o, detail := undo(t, s, en)
	if o != step.Kept || !strings.Contains(detail, "+DELETE ON `openemr`.`patient_access_onsite`") || strings.Contains(detail, "\n") {
		t.Fatalf("undo: %v %q", o, detail)
	}
	a, _ := readAccount(ctx, e.root, s.User, s.Host)
	if !a.exists || !slices.Contains(a.privileges, "DELETE ON `openemr`.`patient_access_onsite`") {
		t.Fatalf("account after kept undo: %+v", a)
	}
	if _, err := os.Stat(s.PasswordFile); err != nil {
		t.Fatalf("password file after kept undo: %v", err)
	}
	// The same through the runner: reported as kept, not undone.
	rep, err := r.Revert(ctx, func(journal.Entry) bool { return true })
	if err != nil || rep.Kept != 1 || rep.Undone != 0 || !e.accountExists(t, s.User) {
		t.Fatalf("revert: %+v %v", rep, err)
	}

	// A password changed since is drift too.
	e.exec(t, "REVOKE DELETE ON openemr.patient_access_onsite FROM 'drift_portal'@'127.0.0.1'")
	if !holds(t, s, en) {
		t.Fatal("not holding once the extra grant is gone")
	}
	e.exec(t, "ALTER USER 'drift_portal'@'127.0.0.1' IDENTIFIED BY 'chosen by the admin'")
	if holds(t, s, en) || check(t, s) {
		t.Fatal("holds or in sync with the password changed since")
	}
	if o, detail := undo(t, s, en); o != step.Kept || !strings.Contains(detail, "password changed") {
		t.Fatalf("undo after password change: %v %q", o, detail)
	}
	// A host in mixed case converges all the same (MariaDB stores it in lower case).
	mixed := e.step(t, "mixed_portal")
	mixed.Host = "Portal-Host.Example"
	t.Cleanup(func() { e.root.Exec("DROP USER IF EXISTS 'mixed_portal'@'portal-host.example'") })
	mr, mj, _ := e.runner(t, mixed)
	if rep, err := mr.Apply(ctx, []step.Step{mixed}); err != nil || rep.Applied != 1 || !check(t, mixed) {
		t.Fatalf("apply with a mixed-case host: %+v %v", rep, err)
	}
	if lines, err := Grants(ctx, e.root, mixed.User, mixed.Host); len(lines) != 4 || err != nil {
		t.Fatalf("grants with a mixed-case host: %q %v", lines, err)
	}
	if o, _ := undo(t, mixed, entry(t, mj, mixed)); o != step.Restored {
		t.Fatalf("undo with a mixed-case host: %v", o)
	}

	// Dropped by the admin: nothing left to undo but emrkit's own file.
	e.exec(t, "DROP USER 'drift_portal'@'127.0.0.1'")
	if o, _ := undo(t, s, en); o != step.AlreadyBefore {
		t.Fatalf("undo of a dropped account: %v", o)
	}
	if _, err := os.Stat(s.PasswordFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("password file: %v", err)
	}
}

func (e *env) testCrash(t *testing.T) {
	ctx := t.Context()

	t.Run("FileWrittenNoAccount", func(t *testing.T) {
		// A crash after the password file was written, before CREATE USER: the entry is
		// pending; the next run finishes with the same password.
		s := e.step(t, "crash_portal")
		e.dropUser(t, s.User)
		r, j, _ := e.runner(t, s)
		d, b, err := s.Capture(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Put(journal.Entry{ID: s.ID(), Kind: Kind, Target: s.Target(), Since: s.Since(), State: journal.Pending, Desired: d, Before: b}); err != nil {
			t.Fatal(err)
		}
		var dd desired
		json.Unmarshal(d, &dd)
		pw, err := secretfile.Ensure(dd.PasswordFile)
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := undo(t, s, entry(t, j, s)); o != step.AlreadyBefore {
			t.Fatalf("undo of the interrupted apply: %v", o)
		}
		if _, err := os.Stat(s.PasswordFile); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("undo left emrkit's password file: %v", err)
		}
		if pw, err = secretfile.Ensure(dd.PasswordFile); err != nil {
			t.Fatal(err)
		}
		rep, err := r.Apply(ctx, []step.Step{s})
		if err != nil || rep.Finished != 1 || !check(t, s) {
			t.Fatalf("resume: %+v %v", rep, err)
		}
		if data, _ := os.ReadFile(s.PasswordFile); string(data) != pw+"\n" {
			t.Fatal("the password file was rewritten")
		}
		if db, err := e.login(t, s.User, s.PasswordFile); err != nil {
			t.Fatalf("login: %v", err)
		} else {
			db.Close()
		}
		// Dropped from under emrkit: Check sees it, Apply converges with the same file.
		e.exec(t, "DROP USER 'crash_portal'@'127.0.0.1'")
		if check(t, s) {
			t.Fatal("in sync without the account")
		}
		if err := s.Apply(ctx, entry(t, j, s).Desired); err != nil || !check(t, s) {
			t.Fatalf("re-apply: %v", err)
		}
		if data, _ := os.ReadFile(s.PasswordFile); string(data) != pw+"\n" {
			t.Fatal("the password file was rewritten")
		}
		if o, _ := undo(t, s, entry(t, j, s)); o != step.Restored || e.accountExists(t, s.User) {
			t.Fatalf("undo: %v", o)
		}
	})

	t.Run("InterruptedApplyOverAccount", func(t *testing.T) {
		// Over an account that was there: a crash after ALTER USER, before REVOKE. Undo of
		// the pending entry puts the account back.
		s := e.step(t, "crash_pre")
		e.dropUser(t, s.User)
		e.exec(t, "CREATE USER 'crash_pre'@'127.0.0.1' IDENTIFIED BY 'theirs'", "GRANT SELECT ON openemr.pnotes TO 'crash_pre'@'127.0.0.1'")
		createBefore, _ := showCreateUser(ctx, e.root, s.User, s.Host)
		showBefore, _ := showGrants(ctx, e.root, s.User, s.Host)
		d, b, err := s.Capture(ctx)
		if err != nil {
			t.Fatal(err)
		}
		en := journal.Entry{ID: s.ID(), Kind: Kind, Target: s.Target(), State: journal.Pending, Desired: d, Before: b}
		if o, _ := undo(t, s, en); o != step.AlreadyBefore {
			t.Fatalf("undo before anything landed: %v", o)
		}
		pw, err := secretfile.Ensure(s.PasswordFile)
		if err != nil {
			t.Fatal(err)
		}
		e.exec(t, "ALTER USER 'crash_pre'@'127.0.0.1' IDENTIFIED BY PASSWORD '"+mariadb.NativePasswordHash(pw)+"'",
			"GRANT SELECT ON openemr.patient_data TO 'crash_pre'@'127.0.0.1'")
		if o, _ := undo(t, s, en); o != step.Restored {
			t.Fatalf("undo of the interrupted apply: %v", o)
		}
		createAfter, _ := showCreateUser(ctx, e.root, s.User, s.Host)
		showAfter, _ := showGrants(ctx, e.root, s.User, s.Host)
		if createAfter != createBefore || !slices.Equal(sameGrants(showAfter), sameGrants(showBefore)) {
			t.Fatalf("account after undo: %s %q", createAfter, showAfter)
		}

		// Applied in full, then an undo interrupted after CREATE OR REPLACE USER: the next
		// undo finishes it.
		if err := s.Apply(ctx, d); err != nil || !check(t, s) {
			t.Fatalf("apply: %v", err)
		}
		en.State = journal.Done
		e.exec(t, "CREATE OR REPLACE USER"+strings.TrimPrefix(createBefore, "CREATE USER"))
		if o, _ := undo(t, s, en); o != step.Restored {
			t.Fatalf("undo finishing an interrupted undo: %v", o)
		}
		showAfter, _ = showGrants(ctx, e.root, s.User, s.Host)
		if !slices.Equal(sameGrants(showAfter), sameGrants(showBefore)) {
			t.Fatalf("grants after the finished undo: %q", showAfter)
		}
	})
}

func (e *env) testBadInput(t *testing.T) {
	ctx := t.Context()
	grantsBefore := e.grantTables(t, false)
	nothingChanged := func(t *testing.T, s UserStep) {
		t.Helper()
		if _, err := os.Stat(s.PasswordFile); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("password file written: %v", err)
		}
		if after := e.grantTables(t, false); after != grantsBefore {
			t.Errorf("grant tables changed:\n%s", after)
		}
	}
	for name, c := range map[string]struct {
		change func(*UserStep)
		want   string
	}{
		"QuoteInTable":  {func(s *UserStep) { s.Tables = append(s.Tables, "pnotes' TO x; --") }, "portal.tables"},
		"MissingTable":  {func(s *UserStep) { s.Tables = append(s.Tables, "no_such_table") }, "table openemr.no_such_table does not exist; fix portal.tables"},
		"QuoteInUser":   {func(s *UserStep) { s.User = "portal'@'%" }, "portal.db_user"},
		"QuoteInHost":   {func(s *UserStep) { s.Host = "127.0.0.1' OR '1" }, "portal.db_host"},
		"BadDatabase":   {func(s *UserStep) { s.Database = "open`emr" }, "database.name"},
		"MissingDir":    {func(s *UserStep) { s.PasswordFile = "/nonexistent/emrkit/portal.password" }, "/nonexistent/emrkit"},
		"RelativeFile":  {func(s *UserStep) { s.PasswordFile = "portal.password" }, "absolute path"},
		"OtherDatabase": {func(s *UserStep) { s.Database = "no_such_db" }, "database no_such_db does not exist"},
		"OpenReadableFile": {func(s *UserStep) {
			os.WriteFile(s.PasswordFile, []byte("x\n"), 0o644)
			os.Chmod(s.PasswordFile, 0o644)
		}, "chmod 600"},
	} {
		t.Run(name, func(t *testing.T) {
			s := e.step(t, "bad_portal")
			c.change(&s)
			r, j, _ := e.runner(t, s)
			_, err := r.Apply(ctx, []step.Step{s})
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one line naming %q, got %v", c.want, err)
			}
			if len(j.Entries()) != 0 {
				t.Errorf("journal: %+v", j.Entries())
			}
			if name != "OpenReadableFile" {
				nothingChanged(t, s)
			} else if after := e.grantTables(t, false); after != grantsBefore {
				t.Errorf("grant tables changed")
			}
		})
	}

	t.Run("MariaDBDown", func(t *testing.T) {
		s := e.step(t, "down_portal")
		s.DB = &mariadb.Shared{Config: config.Database{Socket: filepath.Join(t.TempDir(), "mysqld.sock"), Port: config.P(3306), Name: "openemr", User: "root"}}
		if err := s.Preflight(ctx); err == nil {
			t.Fatal("preflight: no error")
		} else if _, ok := step.IsDeferred(err); !ok || strings.Contains(err.Error(), "\n") {
			t.Fatalf("preflight: want one deferral line, got %v", err)
		}
		r, j, _ := e.runner(t, s)
		rep, err := r.Apply(ctx, []step.Step{s})
		if err != nil || rep.Deferred != 1 {
			t.Fatalf("apply: %+v %v", rep, err)
		}
		if en := entry(t, j, s); en.State != journal.Deferred || !strings.Contains(en.Note, "start MariaDB") {
			t.Fatalf("entry: %+v", en)
		}
		if err := s.Apply(ctx, json.RawMessage(`{"user":"down_portal","host":"127.0.0.1","database":"openemr","tables":["patient_access_onsite"],"write_table":"patient_access_onsite","privileges":["INSERT ON `+"`openemr`.`patient_access_onsite`"+`","SELECT ON `+"`openemr`.`patient_access_onsite`"+`","UPDATE ON `+"`openemr`.`patient_access_onsite`"+`","USAGE ON *.*"],"password_file":"`+s.PasswordFile+`"}`)); err == nil {
			t.Fatal("apply with the server down: no error")
		} else if _, ok := step.IsDeferred(err); !ok {
			t.Fatalf("apply with the server down: %v", err)
		}
		nothingChanged(t, s)
		// Undo with the server gone (a purge after MariaDB was removed): skipped, said so.
		d, _ := json.Marshal(desired{User: s.User, Host: s.Host, Database: "openemr", Tables: []string{"patient_access_onsite"},
			WriteTable: "patient_access_onsite", Privileges: desiredPrivileges("openemr", []string{"patient_access_onsite"}, "patient_access_onsite"), PasswordFile: s.PasswordFile})
		o, detail := undo(t, s, journal.Entry{ID: s.ID(), Kind: Kind, State: journal.Done, Desired: d, Before: json.RawMessage(`{"existed":false}`)})
		if o != step.Skipped || !strings.Contains(detail, "not reachable") {
			t.Fatalf("undo: %v %q", o, detail)
		}
	})
}
