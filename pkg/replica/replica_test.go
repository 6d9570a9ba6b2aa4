package replica

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

// Markers written where the portal must never see them.
const (
	ssnMarker      = "SSN-MARKER-555-12-3456"       // users_secure.password
	noteMarker     = "NOTE-MARKER-PSYCH-EVAL-7731"  // pnotes.body
	annotateMarker = "ANNOTATE-MARKER-HIV-POS-9042" // pnotes.body, set by an UPDATE that also changes patient_data
	portalMarker   = "PORTAL-MARKER-OK-4417"        // a portal table: the positive control
)

// TestFilteredReplica runs the whole chain on three private servers: the primary (with the
// binary-log settings emrkit's drop-in gives), the intermediate started from emrkit's own
// option file exactly as the unit starts it, and the offsite replica configured from
// OffsiteConfig's output and seeded with its command through the intermediate's port.
func TestFilteredReplica(t *testing.T) {
	requireHost(t)
	ctx := t.Context()
	env := testEnv(t)

	primary := mariadbtest.StartWith(t, mariadbtest.Options{Port: mariadbtest.FreePort(t), Args: serverArgs(t, dropIn(true))})
	cfg := loadPortalFixture(t, primary)
	pdb := primary.DB(t, "openemr")
	privBefore := globalPriv(t, pdb)

	shared := &mariadb.Shared{Config: cfg}
	t.Cleanup(func() { shared.Close() })
	port := mariadbtest.FreePort(t)
	r := Replica{Primary: shared, Database: "openemr", Tables: config.Portal{}.TableNames(), Port: port,
		RemotePort: port} // no tunnel here: the offsite replica reaches the intermediate directly
	steps, err := Steps(r, env, Since)
	if err != nil {
		t.Fatal(err)
	}
	run := newRun(t, env, shared)

	// 1. Everything up to the data directory; the service waits for systemd, replication
	// for the server.
	rep := run.apply(t, steps)
	if rep.Applied != 4 || rep.Unchanged != 2 || rep.Deferred != 3 {
		t.Fatalf("first apply: want 4 applied, 2 unchanged (binary log already on: no drop-in, no restart), 3 deferred: %+v", rep)
	}
	if _, err := os.Stat(env.PrimaryDropIn); !os.IsNotExist(err) {
		t.Fatalf("a drop-in was written for a primary that already writes a ROW binary log: %v", err)
	}
	if !strings.Contains(run.out.String(), "systemd is not running") {
		t.Fatalf("the service step does not say systemd is not running:\n%s", run.out.String())
	}
	for _, f := range []string{env.sourcePassword()} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("password file %s: %v %v", f, fi, err)
		}
	}

	// 2. The server, started as systemd would start it; replication and the offsite account.
	inter := startIntermediate(t, env)
	rep = run.apply(t, steps)
	if rep.Applied != 2 || rep.Deferred != 1 {
		t.Fatalf("second apply: want replication and the offsite account applied, the service deferred: %+v", rep)
	}
	// 3. Nothing left to do.
	if rep = run.apply(t, steps); rep.Changed() {
		t.Fatalf("third apply changed something: %+v", rep)
	}
	h, err := ReadHealth(ctx, env)
	if err != nil || !h.Running() || h.Error != "" || !slices.Equal(h.DoTables, r.WantTables()) || h.SecondsBehind < 0 {
		t.Fatalf("ReadHealth: %+v %v (want the filter %v)", h, err, r.WantTables())
	}

	// A changed portal.tables: the option file is rewritten, the filter set on the running
	// server, the tables seeded again and the offsite account's grants follow; then back.
	fewer := r
	fewer.Tables = r.Tables[:2]
	fewerSteps, err := Steps(fewer, env, Since)
	if err != nil {
		t.Fatal(err)
	}
	if rep = run.apply(t, fewerSteps); rep.Applied != 3 {
		t.Fatalf("apply with two tables: want the option file, replication and the offsite account re-applied: %+v", rep)
	}
	idb, err := openIntermediate(ctx, env.socket())
	if err != nil {
		t.Fatal(err)
	}
	defer idb.Close()
	if got := scalar[string](t, idb, "SELECT @@global.replicate_do_table"); strings.Contains(got, "postcalendar") || !strings.Contains(got, "patient_data") {
		t.Fatalf("filter after dropping a table: %s", got)
	}
	if n := scalar[int](t, idb, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'openemr' AND TABLE_NAME = 'openemr_postcalendar_events'"); n != 0 {
		t.Fatal("a table no longer in portal.tables is still on the intermediate")
	}
	if rep = run.apply(t, steps); rep.Applied != 3 {
		t.Fatalf("apply with three tables again: %+v", rep)
	}
	if rep = run.apply(t, steps); rep.Changed() {
		t.Fatalf("apply after the table change changed something: %+v", rep)
	}
	if n := scalar[int](t, idb, "SELECT COUNT(*) FROM openemr.patient_data"); n != 2 {
		t.Fatalf("the intermediate holds %d patient_data rows after seeding again, want the fixture's 2", n)
	}

	// 4. The offsite replica, from what emrkit prints.
	text, err := OffsiteConfig(r, env)
	if err != nil {
		t.Fatal(err)
	}
	offsitePW, ok, err := readPassword(env.offsitePassword())
	if err != nil || !ok {
		t.Fatalf("offsite password: %v %v", ok, err)
	}
	t.Logf("replica-config:\n%s", strings.ReplaceAll(text, offsitePW, "<offsite password>"))
	// What `emrkit portal replica-config` passes: no database connection.
	noConn := r
	noConn.Primary = nil
	if text2, err := OffsiteConfig(noConn, env); err != nil || text2 != text {
		t.Fatalf("OffsiteConfig without a connection: %v", err)
	}
	sourcePW, _, _ := readPassword(env.sourcePassword())
	if !strings.Contains(text, offsitePW) {
		t.Fatal("replica-config does not print the offsite password")
	}
	jtext, err := os.ReadFile(filepath.Join(run.dir, "journal.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(jtext, []byte(offsitePW)) || bytes.Contains(jtext, []byte(sourcePW)) {
		t.Fatal("a replication password is in the journal")
	}
	offsite := mariadbtest.StartWith(t, mariadbtest.Options{Port: mariadbtest.FreePort(t),
		// relay_log_purge=0 keeps every relay log file for the scan below.
		Args: append(serverArgs(t, text), "--relay-log-purge=0")})
	odb := offsite.DB(t, "")
	seedOffsite(t, r, env, offsite)
	change := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "CHANGE MASTER TO") {
			change = line
		}
	}
	exec1(t, odb, change)
	exec1(t, odb, "START SLAVE")

	// 5. Writes on the primary: the portal's tables, and what must never leave the clinic.
	exec1(t, pdb, "INSERT INTO patient_access_onsite (pid, portal_username, portal_pwd) VALUES (2, ?, 'x')", portalMarker)
	exec1(t, pdb, "INSERT INTO patient_data (pid, fname, lname, ss) VALUES (3, 'Grace', 'Hopper', '000-00-0000')")
	exec1(t, pdb, "INSERT INTO openemr_postcalendar_events (pc_pid, pc_title, pc_eventDate) VALUES ('3', 'Follow-up', '2026-12-24')")
	exec1(t, pdb, "INSERT INTO users_secure (id, username, password) VALUES (2, 'drsmith', ?)", ssnMarker)
	exec1(t, pdb, "INSERT INTO pnotes (pid, body) VALUES (1, ?)", noteMarker)
	// One statement that changes a portal table and another: its SQL text names the note.
	exec1(t, pdb, "UPDATE patient_data p JOIN pnotes n ON n.pid = p.pid SET p.lname = 'Byron', n.body = '"+annotateMarker+"' WHERE p.pid = 1")
	exec1(t, pdb, "INSERT INTO patient_data (pid, fname, lname) VALUES (99, 'sentinel', 'sentinel')")
	waitFor(t, 30*time.Second, "the sentinel row on the offsite replica", func() bool {
		var n int
		odb.QueryRowContext(ctx, "SELECT COUNT(*) FROM openemr.patient_data WHERE pid = 99").Scan(&n)
		return n == 1
	})
	for _, q := range []string{
		"SELECT COUNT(*) FROM openemr.patient_access_onsite WHERE portal_username = '" + portalMarker + "'",
		"SELECT COUNT(*) FROM openemr.patient_data WHERE pid = 3 AND fname = 'Grace'",
		"SELECT COUNT(*) FROM openemr.patient_data WHERE pid = 1 AND lname = 'Byron'",
		"SELECT COUNT(*) FROM openemr.openemr_postcalendar_events WHERE pc_title = 'Follow-up'",
	} {
		if n := scalar[int](t, odb, q); n != 1 {
			t.Errorf("offsite replica: %s = %d, want 1", q, n)
		}
	}
	if n := scalar[int](t, odb, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'openemr' AND TABLE_NAME IN ('users_secure', 'pnotes')"); n != 0 {
		t.Errorf("offsite replica has %d of users_secure, pnotes", n)
	}
	if n := scalar[int](t, odb, "SELECT COUNT(*) FROM mysql.global_priv WHERE User IN (?, ?)", SourceUser, OffsiteUser); n != 0 {
		t.Errorf("replication accounts reached the offsite replica: %d", n)
	}
	secrets := []string{ssnMarker, noteMarker, annotateMarker}

	// The primary's binary log holds the secrets (so the scans below can fail) ...
	dec, raw, files := binlogText(t, filepath.Join(primary.Dir(), "data", primaryBinlog+".[0-9]*"))
	for _, m := range secrets {
		if !strings.Contains(dec, m) && !strings.Contains(raw, m) {
			t.Fatalf("control: %s is not in the primary's binary log %v", m, files)
		}
	}
	// ... the intermediate's relay log does too, on the clinic's machine: that is why the
	// filter must run there ...
	dec, raw, files = binlogText(t, filepath.Join(env.dataDir(), intermediateRelay+".[0-9]*"))
	for _, m := range secrets {
		t.Logf("intermediate relay log %v holds %s: %v", files, m, strings.Contains(dec, m) || strings.Contains(raw, m))
	}
	// ... its binary log, which the offsite replica reads, does not, nor the offsite relay log.
	for _, where := range []struct{ name, glob string }{
		{"intermediate binary log", filepath.Join(env.dataDir(), intermediateBinlog+".[0-9]*")},
		{"offsite relay log", filepath.Join(offsite.Dir(), "data", offsiteRelay+".[0-9]*")},
	} {
		dec, raw, files := binlogText(t, where.glob)
		if len(files) == 0 {
			t.Fatalf("no %s files (%s)", where.name, where.glob)
		}
		if !strings.Contains(dec, portalMarker) && !strings.Contains(raw, portalMarker) {
			t.Fatalf("control: the portal row's %s is not in the %s %v", portalMarker, where.name, files)
		}
		for _, m := range secrets {
			if strings.Contains(dec, m) || strings.Contains(raw, m) {
				t.Errorf("%s is in the %s %v", m, where.name, files)
			}
		}
		for _, table := range []string{"users_secure", "pnotes"} {
			if strings.Contains(dec, "`openemr`.`"+table+"`") {
				t.Errorf("the %s names table %s", where.name, table)
			}
		}
	}

	// 6. Lag for 10,000 rows: from the last commit on the primary until the offsite
	// replica has them all.
	const rows, batch = 10000, 100
	started := time.Now()
	for i := 0; i < rows; i += batch {
		var b strings.Builder
		b.WriteString("INSERT INTO openemr_postcalendar_events (pc_pid, pc_title, pc_eventDate) VALUES ")
		for k := range batch {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "('%d', 'lag-%d', '2027-01-01')", i+k, i+k)
		}
		exec1(t, pdb, b.String())
	}
	committed := time.Now()
	waitFor(t, 60*time.Second, "10,000 rows on the offsite replica", func() bool {
		var n int
		odb.QueryRowContext(ctx, "SELECT COUNT(*) FROM openemr.openemr_postcalendar_events WHERE pc_title LIKE 'lag-%'").Scan(&n)
		return n == rows
	})
	t.Logf("replica lag for %d rows in %d transactions of %d (written in %v): %v from the last primary commit to all rows on the offsite replica",
		rows, rows/batch, batch, committed.Sub(started).Round(time.Millisecond), time.Since(committed).Round(time.Millisecond))
	// The worst case for one commit: a single 10,000-row transaction reaches the
	// intermediate only once committed, and the offsite replica only once the intermediate
	// committed it.
	started = time.Now()
	var b strings.Builder
	b.WriteString("INSERT INTO openemr_postcalendar_events (pc_pid, pc_title, pc_eventDate) VALUES ")
	for k := range rows {
		if k > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "('%d', 'big-%d', '2027-01-02')", k, k)
	}
	exec1(t, pdb, b.String())
	committed = time.Now()
	waitFor(t, 60*time.Second, "the 10,000-row transaction on the offsite replica", func() bool {
		var n int
		odb.QueryRowContext(ctx, "SELECT COUNT(*) FROM openemr.openemr_postcalendar_events WHERE pc_title LIKE 'big-%'").Scan(&n)
		return n == rows
	})
	t.Logf("replica lag for %d rows in one transaction (written in %v): %v from its commit to all rows on the offsite replica",
		rows, committed.Sub(started).Round(time.Millisecond), time.Since(committed).Round(time.Millisecond))
	h, err = ReadHealth(ctx, env)
	t.Logf("ReadHealth() after the load: %+v err=%v", h, err)
	if err != nil || !h.Running() || h.Error != "" {
		t.Fatalf("ReadHealth: %+v %v", h, err)
	}

	// 7. Revert: everything emrkit made goes, the primary's accounts are as before.
	run.out.Reset()
	rep, err = run.runner().Revert(ctx, func(journal.Entry) bool { return true })
	t.Logf("revert: %+v\n%s", rep, run.out.String())
	if err != nil {
		t.Fatalf("revert: %v", err)
	}
	inter.waitExit(t, 60*time.Second)
	for _, f := range []string{env.ConfigFile, env.unitPath(), env.sourcePassword(), env.offsitePassword(), env.DataDir, env.PrimaryDropIn} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("%s is still there after revert (%v)", f, err)
		}
	}
	if after := globalPriv(t, pdb); after != privBefore {
		t.Errorf("the primary's accounts differ after revert:\nbefore:\n%s\nafter:\n%s", privBefore, after)
	}
	for _, e := range run.j.Entries() {
		if e.State != journal.Undone {
			t.Errorf("entry %s is %s after revert", e.ID, e.State)
		}
	}
}

// seedOffsite runs OffsiteConfig's seeding command against the offsite server, the
// password coming from an option file instead of the prompt.
func seedOffsite(t *testing.T, r Replica, env Env, offsite *mariadbtest.Server) {
	t.Helper()
	exec1(t, offsite.DB(t, ""), "CREATE DATABASE IF NOT EXISTS `"+r.Database+"`")
	dumpPath, _ := lookTool("mariadb-dump", "mariadb-client")
	clientPath, _ := lookTool("mariadb", "mariadb-client")
	dump, done, err := mariadb.Command(t.Context(), config.Database{Host: "127.0.0.1", Port: config.P(r.RemotePort),
		User: OffsiteUser, PasswordFile: env.offsitePassword()}, dumpPath, seedDumpArgs(r)...)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	load := exec.CommandContext(t.Context(), clientPath, "--no-defaults", "--socket="+offsite.Socket, "--user=root", r.Database)
	var dumpErr, loadOut bytes.Buffer
	dump.Stderr = &dumpErr
	pipe, err := dump.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	load.Stdin, load.Stdout, load.Stderr = pipe, &loadOut, &loadOut
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	if err := load.Run(); err != nil {
		t.Fatalf("load the offsite seed: %v: %s", err, loadOut.String())
	}
	if err := dump.Wait(); err != nil {
		t.Fatalf("the offsite seeding dump (as %s): %v: %s", OffsiteUser, err, dumpErr.String())
	}
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGatedUntilRestart: a primary without a binary log gets the drop-in, and every other
// step waits, with the restart in its reason; nothing restarts MariaDB.
func TestGatedUntilRestart(t *testing.T) {
	requireHost(t)
	env := testEnv(t)
	primary := mariadbtest.StartWith(t, mariadbtest.Options{Port: mariadbtest.FreePort(t)})
	cfg := loadPortalFixture(t, primary)
	pdb := primary.DB(t, "")
	uptime := func() int {
		var name string
		var v int
		if err := pdb.QueryRowContext(t.Context(), "SHOW GLOBAL STATUS LIKE 'Uptime'").Scan(&name, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	up := uptime()
	shared := &mariadb.Shared{Config: cfg}
	t.Cleanup(func() { shared.Close() })
	r := Replica{Primary: shared, Database: "openemr", Tables: config.Portal{}.TableNames(), Port: mariadbtest.FreePort(t), RemotePort: 13306}
	steps, err := Steps(r, env, Since)
	if err != nil {
		t.Fatal(err)
	}
	run := newRun(t, env, shared)
	// A dry run says what would happen and changes nothing.
	dry := run.runner()
	dry.DryRun = true
	if rep, err := dry.Apply(t.Context(), steps); err != nil || rep.Applied != 1 || rep.Deferred != len(steps)-1 {
		t.Fatalf("dry run: %+v %v\n%s", rep, err, run.out.String())
	}
	if _, err := os.Stat(env.PrimaryDropIn); !os.IsNotExist(err) || len(run.j.Entries()) != 0 {
		t.Fatal("the dry run wrote something")
	}
	rep := run.apply(t, steps)
	if rep.Applied != 1 || rep.Deferred != len(steps)-1 {
		t.Fatalf("want the drop-in applied and %d steps deferred: %+v", len(steps)-1, rep)
	}
	got, err := os.ReadFile(env.PrimaryDropIn)
	if err != nil || string(got) != dropIn(true) {
		t.Fatalf("drop-in: %v\n%s", err, got)
	}
	deferred := 0
	for _, line := range strings.Split(run.out.String(), "\n") {
		if strings.HasPrefix(line, "deferred") {
			deferred++
			if !strings.Contains(line, "systemctl restart mariadb") || !strings.Contains(line, "emrkit apply") {
				t.Errorf("deferral without the restart advice: %s", line)
			}
		}
	}
	if deferred != len(steps)-1 {
		t.Errorf("%d deferral lines, want %d", deferred, len(steps)-1)
	}
	if scalar[int](t, pdb, "SELECT @@log_bin") != 0 || uptime() < up {
		t.Fatal("MariaDB was restarted")
	}
	for _, f := range []string{env.ConfigFile, env.sourcePassword(), env.DataDir} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("%s was made before the restart", f)
		}
	}
	if rep := run.apply(t, steps); rep.Changed() || rep.Unchanged != 1 {
		t.Fatalf("re-apply: %+v", rep)
	}
	if _, err := OffsiteConfig(r, env); err == nil {
		t.Error("OffsiteConfig without an offsite account: no error")
	}
	rep, err = run.runner().Revert(t.Context(), func(journal.Entry) bool { return true })
	if err != nil || rep.Undone != 1 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if _, err := os.Stat(env.PrimaryDropIn); !os.IsNotExist(err) {
		t.Fatal("the drop-in is still there after revert")
	}
}

// TestFormatOnlyDropIn: a primary with a binary log in MIXED format gets only
// binlog_format=ROW, never a second log_bin.
func TestFormatOnlyDropIn(t *testing.T) {
	requireHost(t)
	env := testEnv(t)
	primary := mariadbtest.StartWith(t, mariadbtest.Options{Port: mariadbtest.FreePort(t), Args: []string{"--log-bin=clinic-bin", "--binlog-format=MIXED"}})
	cfg := loadPortalFixture(t, primary)
	shared := &mariadb.Shared{Config: cfg}
	t.Cleanup(func() { shared.Close() })
	r := Replica{Primary: shared, Database: "openemr", Tables: []string{"patient_data"}, Port: mariadbtest.FreePort(t), RemotePort: 13306}
	steps, err := Steps(r, env, Since)
	if err != nil {
		t.Fatal(err)
	}
	run := newRun(t, env, shared)
	if rep := run.apply(t, steps); rep.Applied != 1 {
		t.Fatalf("%+v", rep)
	}
	got, _ := os.ReadFile(env.PrimaryDropIn)
	if string(got) != dropIn(false) || strings.Contains(string(got), "log_bin") {
		t.Fatalf("drop-in for a MIXED binary log:\n%s", got)
	}
	if !strings.Contains(run.out.String(), "binlog_format=MIXED") {
		t.Errorf("the deferral does not name the format:\n%s", run.out.String())
	}
}

// TestBadNames: a table or database name with a quote is one line naming it, before any
// step exists; nothing is written.
func TestBadNames(t *testing.T) {
	env := testEnv(t)
	shared := &mariadb.Shared{}
	for _, r := range []Replica{
		{Primary: shared, Database: "openemr", Tables: []string{"patient_data", "pnotes'; DROP TABLE x; --"}, Port: 3307, RemotePort: 13306},
		{Primary: shared, Database: "open`emr", Tables: []string{"patient_data"}, Port: 3307, RemotePort: 13306},
		{Primary: shared, Database: "openemr", Tables: []string{"patient_data"}, Port: 0, RemotePort: 13306},
	} {
		_, err := Steps(r, env, Since)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Steps(%v): want a one-line error, got %v", r, err)
		}
		t.Log(err)
		if _, err := OffsiteConfig(r, env); err == nil {
			t.Errorf("OffsiteConfig(%v): no error", r)
		}
	}
	bad := env
	bad.DataDir = "/var/lib/emrkit portal"
	if _, err := Steps(Replica{Primary: shared, Database: "openemr", Tables: []string{"patient_data"}, Port: 3307, RemotePort: 13306}, bad, Since); err == nil {
		t.Error("a path with a blank: no error")
	}
	for _, d := range []string{"etc", "conf.d", "systemd"} {
		entries, _ := os.ReadDir(filepath.Join(filepath.Dir(env.ConfigFile), "..", d))
		if len(entries) != 0 {
			t.Errorf("%s is not empty", d)
		}
	}
}

// TestGeneratedFiles: the unit runs StartArgs as mysql, the option file filters exactly the
// portal tables and never passes statement text on.
func TestGeneratedFiles(t *testing.T) {
	env := DefaultEnv()
	r := Replica{Database: "openemr", Tables: config.Portal{}.TableNames(), Port: 3307, RemotePort: 13306}
	unit := Unit(env)
	for _, want := range []string{"ExecStart=/usr/sbin/mariadbd --defaults-file=/etc/emrkit/portal-replica.cnf\n", "User=mysql\n",
		"RuntimeDirectory=emrkit-portal-replica\n", "ReadWritePaths=/var/lib/emrkit-portal-replica\n", "WantedBy=multi-user.target\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	cnf := ServerConfig(r, env)
	for _, want := range []string{"replicate_do_table = openemr.patient_access_onsite\n", "replicate_do_table = openemr.patient_data\n",
		"replicate_do_table = openemr.openemr_postcalendar_events\n", "replicate_annotate_row_events = 0\n", "read_only = 1\n",
		"log_slave_updates = 1\n", "binlog_format = ROW\n", "bind-address = 127.0.0.1\n", "port = 3307\n"} {
		if !strings.Contains(cnf, want) {
			t.Errorf("option file lacks %q:\n%s", want, cnf)
		}
	}
	if strings.Count(cnf, "replicate_do_table") != 3 || strings.Contains(cnf, "skip_slave_start") {
		t.Errorf("option file:\n%s", cnf)
	}
	if _, err := env.check(); err != nil {
		t.Fatal(err)
	}
	// systemd's own parser accepts the unit (it also checks that ExecStart's binary is there).
	if _, err := lookTool("mariadbd", "mariadb-server"); err != nil {
		t.Fatal(err)
	}
	analyze, err := lookTool("systemd-analyze", "systemd")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), ServiceName)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), analyze, "verify", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	var _ step.Step = binlogStep{}
}

// TestForeignAccountRefused: an account of emrkit's name that emrkit did not make stops the
// run at preflight, before anything changed.
func TestForeignAccountRefused(t *testing.T) {
	requireHost(t)
	env := testEnv(t)
	primary := mariadbtest.StartWith(t, mariadbtest.Options{Port: mariadbtest.FreePort(t)})
	cfg := loadPortalFixture(t, primary)
	exec1(t, primary.DB(t, ""), "CREATE USER `"+SourceUser+"`@`127.0.0.1` IDENTIFIED BY 'the-dba-s-own'")
	shared := &mariadb.Shared{Config: cfg}
	t.Cleanup(func() { shared.Close() })
	r := Replica{Primary: shared, Database: "openemr", Tables: []string{"patient_data"}, Port: mariadbtest.FreePort(t), RemotePort: 13306}
	steps, err := Steps(r, env, Since)
	if err != nil {
		t.Fatal(err)
	}
	run := newRun(t, env, shared)
	_, err = run.runner().Apply(t.Context(), steps)
	if err == nil || !strings.Contains(err.Error(), "was not made by emrkit") || !strings.Contains(err.Error(), "nothing was changed") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line refusal, got %v", err)
	}
	t.Log(err)
	if _, err := os.Stat(env.PrimaryDropIn); !os.IsNotExist(err) {
		t.Fatal("the drop-in was written although the run was refused")
	}
	if len(run.j.Entries()) != 0 {
		t.Fatalf("journal: %+v", run.j.Entries())
	}
}
