package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/progress"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/twofa"
)

const fixtureRows = 10_000

// words splits on spaces only, as MariaDB's TRIM, LOCATE(' ') and SUBSTRING_INDEX do.
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' })
}

// emptyMiddle is the seed's `middleNames IS NULL OR middleNames = ”` in a PAD SPACE
// collation: blanks only count as empty.
func emptyMiddle(m *string) bool { return m == nil || strings.TrimRight(*m, " ") == "" }

// rule is the middle-names rule, written independently of the SQL.
func rule(first string, middle *string) (string, *string) {
	t := strings.Trim(first, " ")
	i := strings.IndexByte(t, ' ')
	if i < 0 || !emptyMiddle(middle) {
		return t, middle
	}
	rest := strings.Join(words(t[i+1:]), " ")
	return t[:i], &rest
}

// TestMiddleNames is the acceptance test on 10,000 fixture rows: after up, every row the
// seed's SQL handles without loss equals what the seed's SQL makes of a copy; every other row
// follows the rule with no word lost; after down the table is the original byte for byte.
func TestMiddleNames(t *testing.T) {
	srv := mariadbtest.Start(t)
	orig := newFixture(t, srv, "orig", "", fixtureRows)
	seed := newFixture(t, srv, "seed", "orig", 0)
	emr := newFixture(t, srv, "emr", "orig", 0)
	m, _ := Lookup("middle-names")
	before := orig.dump()
	if emr.dump() != before {
		t.Fatal("copies differ before anything ran")
	}

	runSeed(t, seed, m.Seed)
	env := emr.env()
	env.BatchSize = 700 // several batches, the last one partial
	rep, err := emr.up(env, "middle-names")
	if err != nil || rep.Applied != 1 {
		t.Fatalf("up: %+v %v\n%s", rep, err, emr.out)
	}

	o, cols := table(t, orig.db)
	s, _ := table(t, seed.db)
	g, _ := table(t, emr.db)
	fi, mi := col(cols, "first_name"), col(cols, "middleNames")
	var safe, leftWhole, collapsed, changed int
	for k, or := range o {
		gr, sr := g[k], s[k]
		for c := range cols {
			if c != fi && c != mi && !eq(gr[c], or[c]) {
				t.Fatalf("row %d: column %s changed: %s -> %s", k, cols[c], str(or[c]), str(gr[c]))
			}
		}
		if !eq(gr[fi], or[fi]) || !eq(gr[mi], or[mi]) {
			changed++
		}
		t0 := strings.Trim(*or[fi], " ")
		multi := strings.Contains(t0, " ")
		if !multi || (emptyMiddle(or[mi]) && !strings.Contains(t0, "  ")) {
			safe++
			if !eq(gr[fi], sr[fi]) || !eq(gr[mi], sr[mi]) {
				t.Errorf("row %d (%s, %s): emrkit made (%s, %s), the seed's SQL (%s, %s)",
					k, str(or[fi]), str(or[mi]), str(gr[fi]), str(gr[mi]), str(sr[fi]), str(sr[mi]))
			}
			continue
		}
		wantF, wantM := rule(*or[fi], or[mi])
		if *gr[fi] != wantF || !eq(gr[mi], wantM) {
			t.Errorf("row %d (%s, %s): got (%s, %s), want (%s, %s)", k, str(or[fi]), str(or[mi]), str(gr[fi]), str(gr[mi]), str(&wantF), str(wantM))
		}
		// No word lost: the words emrkit left are the words there were.
		before := append(words(*or[fi]), words(deref(or[mi]))...)
		after := append(words(*gr[fi]), words(deref(gr[mi]))...)
		if emptyMiddle(or[mi]) {
			before = words(*or[fi])
		}
		slices.Sort(before)
		slices.Sort(after)
		if !slices.Equal(before, after) {
			t.Errorf("row %d: words %v became %v", k, before, after)
		}
		if emptyMiddle(or[mi]) {
			collapsed++
			if strings.Contains(*gr[mi], "  ") || strings.HasPrefix(*gr[mi], " ") {
				t.Errorf("row %d: middleNames %s not single-spaced", k, str(gr[mi]))
			}
		} else {
			leftWhole++
			if eq(sr[fi], gr[fi]) {
				t.Errorf("row %d: the seed's SQL should have dropped a word of %s here", k, str(or[fi]))
			}
		}
	}
	// The fixture must exercise every case, or the test proves little.
	if safe < 5000 || leftWhole < 500 || collapsed < 200 || changed < 2000 {
		t.Fatalf("fixture too tame: %d rows like the seed, %d left whole, %d collapsed, %d changed", safe, leftWhole, collapsed, changed)
	}
	out := emr.out.String()
	if !strings.Contains(out, fmt.Sprintf("changed %s rows", progress.Group(int64(changed)))) ||
		!strings.Contains(out, fmt.Sprintf("left %s rows' first_name whole", progress.Group(int64(leftWhole)))) ||
		!strings.Contains(out, "middle-names: 10,000/10,000 rows (100%)") {
		t.Fatalf("report:\n%s", out)
	}
	var undoRows int
	emr.db.QueryRow("SELECT COUNT(*) FROM emrkit_undo_middle_names").Scan(&undoRows)
	if undoRows != changed {
		t.Fatalf("undo table holds %d rows, %d changed", undoRows, changed)
	}
	e, ok := emr.j.Get("migrate.middle-names:emr.demographic")
	if !ok || e.State != journal.Done || e.Origin != journal.OriginCommand || !strings.Contains(string(e.Desired), `"undo_table":"emrkit_undo_middle_names"`) {
		t.Fatalf("journal entry: %+v", e)
	}
	if ok, err := (Undoer{env: env}).Holds(context.Background(), e); !ok || err != nil {
		t.Fatalf("holds: %v %v", ok, err)
	}

	// Up again changes nothing.
	after := emr.dump()
	if rep, err := emr.up(env, "middle-names"); err != nil || rep.Changed() {
		t.Fatalf("second up: %+v %v", rep, err)
	}
	if emr.dump() != after {
		t.Fatal("second up changed the table")
	}

	emr.out.Reset()
	rep, err = emr.down(env, "middle-names")
	if err != nil || rep.Undone != 1 || rep.Kept != 0 {
		t.Fatalf("down: %+v %v\n%s", rep, err, emr.out)
	}
	if emr.dump() != before {
		t.Fatal("after down the table is not the original")
	}
	if got := emr.tables(); !slices.Equal(got, []string{"demographic"}) {
		t.Fatalf("emrkit tables left behind: %v", got)
	}
	if !strings.Contains(emr.out.String(), fmt.Sprintf("restored %s rows; backup in %s/emr-before-migrate-down-middle-names-", progress.Group(int64(changed)), emr.backup)) {
		t.Fatalf("down report:\n%s", emr.out)
	}
	redoFromBackup(t, emr, after)
	if e, _ := emr.j.Get("migrate.middle-names:emr.demographic"); e.State != journal.Undone {
		t.Fatalf("journal after down: %+v", e)
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// TestRosterEnrolledTo: up equals the seed's SQL on every row, down gives back the original.
func TestRosterEnrolledTo(t *testing.T) {
	srv := mariadbtest.Start(t)
	orig := newFixture(t, srv, "orig", "", fixtureRows)
	seed := newFixture(t, srv, "seed", "orig", 0)
	emr := newFixture(t, srv, "emr", "orig", 0)
	m, _ := Lookup("roster-enrolled-to")
	before := orig.dump()
	runSeed(t, seed, m.Seed)
	env := emr.env()
	if _, err := emr.up(env, "roster-enrolled-to"); err != nil {
		t.Fatal(err)
	}
	o, cols := table(t, orig.db)
	s, _ := table(t, seed.db)
	g, _ := table(t, emr.db)
	changed := 0
	for k := range o {
		for c := range cols {
			if !eq(g[k][c], s[k][c]) {
				t.Fatalf("row %d column %s: emrkit %s, the seed's SQL %s", k, cols[c], str(g[k][c]), str(s[k][c]))
			}
		}
		if !eq(g[k][col(cols, "roster_enrolled_to")], o[k][col(cols, "roster_enrolled_to")]) {
			changed++
		}
	}
	if changed < 2000 {
		t.Fatalf("only %d rows changed: fixture too tame", changed)
	}
	var noMRP int
	emr.db.QueryRow("SELECT COUNT(*) FROM demographic WHERE roster_status='RO' AND (roster_enrolled_to IS NULL OR roster_enrolled_to = '')").Scan(&noMRP)
	if !strings.Contains(emr.out.String(), fmt.Sprintf("%s rostered patients have no MRP", progress.Group(int64(noMRP)))) || noMRP == 0 {
		t.Fatalf("report (%d without MRP):\n%s", noMRP, emr.out)
	}
	if _, err := emr.down(env, "roster-enrolled-to"); err != nil {
		t.Fatal(err)
	}
	if emr.dump() != before {
		t.Fatal("after down the table is not the original")
	}
}

// TestDownKeepsRowsEditedSince: rows changed between up and down keep their new values and
// are reported; every other row comes back exactly.
func TestDownKeepsRowsEditedSince(t *testing.T) {
	srv := mariadbtest.Start(t)
	orig := newFixture(t, srv, "orig", "", fixtureRows)
	emr := newFixture(t, srv, "emr", "orig", 0)
	env := emr.env()
	if _, err := emr.up(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	var migrated []int64
	rows, _ := emr.db.Query("SELECT demographic_no FROM emrkit_undo_middle_names ORDER BY demographic_no LIMIT 4")
	for rows.Next() {
		var k int64
		rows.Scan(&k)
		migrated = append(migrated, k)
	}
	rows.Close()
	var untouched int64
	emr.db.QueryRow("SELECT MIN(demographic_no) FROM demographic WHERE demographic_no NOT IN (SELECT demographic_no FROM emrkit_undo_middle_names)").Scan(&untouched)
	a, b, c, same := migrated[0], migrated[1], migrated[2], migrated[3]
	for _, q := range []string{
		fmt.Sprintf("UPDATE demographic SET first_name = 'Edited' WHERE demographic_no = %d", a),
		fmt.Sprintf("UPDATE demographic SET middleNames = 'Typed In OSCAR' WHERE demographic_no = %d", b),
		fmt.Sprintf("DELETE FROM demographic WHERE demographic_no = %d", c),
		fmt.Sprintf("UPDATE demographic SET first_name = 'Other' WHERE demographic_no = %d", untouched),
		// Edited back to exactly what it was before the migration: nothing to restore or keep.
		fmt.Sprintf("UPDATE demographic d JOIN emrkit_undo_middle_names u USING (demographic_no) SET d.first_name = u.old_first_name, d.middleNames = u.old_middleNames WHERE demographic_no = %d", same),
	} {
		if _, err := emr.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := emr.down(env, "middle-names")
	if err != nil || rep.Kept != 1 {
		t.Fatalf("down: %+v %v", rep, err)
	}
	want := fmt.Sprintf("kept 3 rows edited or deleted since the migration (demographic_no %d, %d, %d)", a, b, c)
	if !strings.Contains(emr.out.String(), want) {
		t.Fatalf("report lacks %q:\n%s", want, emr.out)
	}
	o, cols := table(t, orig.db)
	g, _ := table(t, emr.db)
	fi, mi := col(cols, "first_name"), col(cols, "middleNames")
	for k, or := range o {
		switch k {
		case a:
			if *g[k][fi] != "Edited" {
				t.Errorf("edited first_name of %d overwritten: %s", k, str(g[k][fi]))
			}
		case b:
			if *g[k][mi] != "Typed In OSCAR" {
				t.Errorf("edited middleNames of %d overwritten: %s", k, str(g[k][mi]))
			}
		case c:
			if g[k] != nil {
				t.Errorf("deleted row %d came back", k)
			}
		case untouched:
			if *g[k][fi] != "Other" {
				t.Errorf("row %d, never migrated, was changed by down", k)
			}
		default:
			if !slices.EqualFunc(g[k], or, eq) {
				t.Errorf("row %d not restored: %v", k, g[k])
			}
		}
	}
}

// TestFailedBatchLeavesEverythingRecorded: a batch that fails half-way (a value too long for
// its column, on a server whose sql_mode would truncate it silently) stops the migration with
// a clear error; every row changed before is recorded and down restores the original.
func TestFailedBatchLeavesEverythingRecorded(t *testing.T) {
	srv := mariadbtest.Start(t)
	root := srv.DB(t, "")
	root.Exec("SET GLOBAL sql_mode = ''") // as many OSCAR installs run
	t.Cleanup(func() { root.Exec("SET GLOBAL sql_mode = DEFAULT") })
	// One worker stops at the bad batch; with two, the other segment (keys up to 5000) stops
	// after its current batch, and each segment resumes where it stopped.
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			emr := newFixture(t, srv, fmt.Sprintf("emr%d", workers), "", fixtureRows)
			var bad int64
			emr.db.QueryRow("SELECT MIN(demographic_no) FROM demographic WHERE demographic_no > 6000 AND roster_status = 'RO' AND roster_enrolled_to IS NULL").Scan(&bad)
			if _, err := emr.db.Exec("UPDATE demographic SET provider_no = 'provider-with-a-long-id-42' WHERE demographic_no = ?", bad); err != nil {
				t.Fatal(err)
			}
			before := emr.dump()
			ref := newFixture(t, srv, fmt.Sprintf("ref%d", workers), emr.name, 0)

			env := emr.env()
			env.BatchSize, env.Workers = 1000, workers
			_, err := emr.up(env, "roster-enrolled-to")
			if err == nil || !strings.Contains(err.Error(), "migration roster-enrolled-to stopped at demographic_no 6001..7000") ||
				!strings.Contains(err.Error(), "Data too long for column") || !strings.Contains(err.Error(), "run `emrkit migrate up roster-enrolled-to` to continue") {
				t.Fatalf("got %v", err)
			}
			e, _ := emr.j.Get("migrate.roster-enrolled-to:" + emr.name + ".demographic")
			if e.State != journal.Pending {
				t.Fatalf("journal entry should stay pending: %+v", e)
			}
			st, _, _ := ReadState(context.Background(), emr.db, "roster-enrolled-to")
			var seg2 int64
			emr.db.QueryRow("SELECT COALESCE(MAX(last_key), 0) FROM " + ProgressTable + " WHERE segment = 2").Scan(&seg2)
			switch {
			case st.State != stateRunning:
				t.Fatalf("progress: %+v", st)
			case workers == 1 && st.LastKey != 6000:
				t.Fatalf("progress: %+v", st)
			case workers == 2 && (st.LastKey > 5000 || seg2 != 6000):
				t.Fatalf("progress: %+v, segment 2 at %d", st, seg2)
			}
			assertRecorded(t, emr, ref.db, "roster-enrolled-to")
			if _, err := emr.down(env, "roster-enrolled-to"); err != nil {
				t.Fatal(err)
			}
			if emr.dump() != before {
				t.Fatal("down after a failed up did not restore the original")
			}
		})
	}
}

// assertRecorded checks that every row of f that differs from ref's row is in the undo table,
// with ref's values as old and f's current values as new.
func assertRecorded(t *testing.T, f *fixture, ref *sql.DB, name string) {
	t.Helper()
	m, _ := Lookup(name)
	o, cols := table(t, ref)
	g, _ := table(t, f.db)
	var undoCols []string
	for _, c := range m.Columns {
		undoCols = append(undoCols, "old_"+c.Name, "new_"+c.Name)
	}
	var recorded int
	for k, or := range o {
		vals := make([]*string, len(undoCols))
		dest := make([]any, len(vals))
		for i := range vals {
			dest[i] = &vals[i]
		}
		err := f.db.QueryRow("SELECT "+strings.Join(undoCols, ", ")+" FROM "+m.UndoTable()+" WHERE demographic_no = ?", k).Scan(dest...)
		inUndo := err == nil
		differs := false
		for i, c := range m.Columns {
			ci := col(cols, c.Name)
			if !eq(g[k][ci], or[ci]) {
				differs = true
			}
			if inUndo && (!eq(vals[2*i], or[ci]) || !eq(vals[2*i+1], g[k][ci])) {
				t.Fatalf("row %d: undo record (%s -> %s) does not match (%s -> %s)", k, str(vals[2*i]), str(vals[2*i+1]), str(or[ci]), str(g[k][ci]))
			}
		}
		if differs && !inUndo {
			t.Fatalf("row %d was changed but is not recorded", k)
		}
		if inUndo {
			recorded++
		}
	}
	if recorded == 0 {
		t.Fatal("nothing recorded: the test stopped too early to prove anything")
	}
}

func TestBadInput(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "emr", "", 100)

	if _, err := Steps(f.env(), []string{"middle-names", "nope"}, "0.4.0"); err == nil ||
		err.Error() != `unknown migration "nope"; known: middle-names, roster-enrolled-to` {
		t.Fatalf("unknown name: %v", err)
	}

	// A database without OSCAR's table, and one whose table lacks a column: nothing is
	// created, nothing journaled.
	srv.CreateDatabase(t, "empty")
	empty := &fixture{t: t, srv: srv, name: "empty", db: srv.DB(t, "empty"), j: f.j, out: f.out}
	if _, err := empty.up(empty.env(), "middle-names"); err == nil ||
		!strings.Contains(err.Error(), "database empty has no demographic table; set database.name to OSCAR's database") {
		t.Fatalf("missing table: %v", err)
	}
	if got := empty.tables(); len(got) != 0 {
		t.Fatalf("tables created in a database without demographic: %v", got)
	}
	f.db.Exec("ALTER TABLE demographic DROP COLUMN middleNames")
	if _, err := f.up(f.env(), "middle-names"); err == nil ||
		!strings.Contains(err.Error(), "emr.demographic has no column middleNames, which migration middle-names needs") {
		t.Fatalf("missing column: %v", err)
	}
	if len(f.j.Entries()) != 0 || !slices.Equal(f.tables(), []string{"demographic"}) {
		t.Fatalf("bad input left %v, %v", f.j.Entries(), f.tables())
	}

	// An undo table someone else filled is not overwritten.
	if _, err := f.up(f.env(), "roster-enrolled-to"); err != nil {
		t.Fatal(err)
	}
	f.db.Exec("DELETE FROM emrkit_migrations")
	if _, err := f.runner(f.env()).Run(ctx, mustSteps(t, f.env(), "roster-enrolled-to")); err == nil ||
		!strings.Contains(err.Error(), "emrkit will not overwrite it") {
		t.Fatalf("foreign undo data: %v", err)
	}

	// A dry run changes nothing.
	g := newFixture(t, srv, "dry", "", 500)
	before := g.dump()
	r := g.runner(g.env())
	r.DryRun = true
	if rep, err := r.Run(ctx, mustSteps(t, g.env(), "middle-names")); err != nil || rep.Applied != 1 {
		t.Fatalf("dry run: %+v %v", rep, err)
	}
	if g.dump() != before || !slices.Equal(g.tables(), []string{"demographic"}) || len(g.j.Entries()) != 0 {
		t.Fatal("dry run changed something")
	}
	n, err := Preview(ctx, g.db, "dry", "middle-names")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.up(g.env(), "middle-names"); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := ReadState(ctx, g.db, "middle-names"); st.Changed != n || n == 0 {
		t.Fatalf("preview said %d, up changed %d", n, st.Changed)
	}

	// Undo without a backup function refuses before touching anything.
	noBackup := g.env()
	noBackup.Backup = nil
	if _, err := g.down(noBackup, "middle-names"); err == nil || !strings.Contains(err.Error(), "refusing to undo middle-names without a backup") {
		t.Fatalf("undo without backup: %v", err)
	}
	// A backup that fails (an unwritable backup dir) stops the undo: nothing restored.
	failing := g.env()
	failing.Backup = func(context.Context, string, ...string) (string, error) {
		return "", fmt.Errorf("backup: cannot write in /nowhere")
	}
	after := g.dump()
	if _, err := g.down(failing, "middle-names"); err == nil || !strings.Contains(err.Error(), "backup before undoing middle-names: backup: cannot write in /nowhere; nothing was undone") {
		t.Fatalf("failing backup: %v", err)
	}
	if g.dump() != after {
		t.Fatal("undo went ahead without its backup")
	}

	// MariaDB down: the plan's steps (through the lazy twofa.DB) defer and its undoers skip;
	// a command's open connection errors.
	srv.Stop()
	lazy := g.env()
	lazy.DB = twofa.NewDB(g.cfg)
	r = g.runner(lazy)
	rep, err := r.Apply(ctx, mustSteps(t, lazy, "roster-enrolled-to"))
	if err != nil || rep.Deferred != 1 {
		t.Fatalf("plan with MariaDB down: %+v %v", rep, err)
	}
	if e, _ := g.j.Get("migrate.roster-enrolled-to:dry.demographic"); e.State != journal.Deferred || !strings.Contains(e.Note, "cannot reach the database server") {
		t.Fatalf("deferral: %+v", e)
	}
	done, _ := g.j.Get("migrate.middle-names:dry.demographic")
	if o, detail, err := (Undoer{env: lazy}).Undo(ctx, done); o != step.Skipped || err != nil || !strings.Contains(detail, "database not reachable") {
		t.Fatalf("undo with MariaDB down: %v %q %v", o, detail, err)
	}
	if ok, err := (Undoer{env: g.env()}).Holds(ctx, journal.Entry{Kind: "migrate.middle-names", Desired: []byte(`{}`)}); ok || err == nil {
		t.Fatalf("holds with the database down: %v %v", ok, err)
	}
	if _, err := g.up(g.env(), "roster-enrolled-to"); err == nil {
		t.Fatal("up with the database down succeeded")
	}
	if e, _ := g.j.Get("migrate.roster-enrolled-to:dry.demographic"); e.State != journal.Deferred {
		t.Fatalf("a failed up changed the journal: %+v", e)
	}
}

func mustSteps(t *testing.T, env Env, names ...string) []step.Step {
	t.Helper()
	s, err := Steps(env, names, "0.4.0")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// TestRowsAddedDuringUpAreLeftAlone: a patient registered while up runs (OSCAR 19 is in use)
// is not rewritten: the migration covers the rows there were when it started.
func TestRowsAddedDuringUpAreLeftAlone(t *testing.T) {
	srv := mariadbtest.Start(t)
	f := newFixture(t, srv, "emr", "", 2000)
	other := srv.DB(t, "emr")
	env := f.env()
	env.BatchSize = 500
	done := make(chan error, 1)
	var once bool
	env.afterBatch = func() {
		if !once {
			once = true
			go func() {
				_, err := other.Exec("INSERT INTO demographic (last_name, first_name, middleNames, sex) VALUES ('New', 'Mary Ann', NULL, 'F')")
				done <- err
			}()
		}
	}
	if _, err := f.up(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var first string
	var middle sql.NullString
	f.db.QueryRow("SELECT first_name, middleNames FROM demographic WHERE last_name = 'New'").Scan(&first, &middle)
	if first != "Mary Ann" || middle.Valid {
		t.Fatalf("a patient registered during the migration was rewritten: %q %v", first, middle)
	}
	if st, _, _ := ReadState(context.Background(), f.db, "middle-names"); st.HighKey != 2000 || st.LastKey != 2000 {
		t.Fatalf("progress: %+v", st)
	}
}

// redoFromBackup proves the backup down took first (the undo and progress tables only) is
// all down needs: it holds no other table, and loaded back it reverses down exactly — the
// migrated columns set to the recorded new values where they hold the old ones give the
// table as up left it. The loaded tables are dropped again.
func redoFromBackup(t *testing.T, emr *fixture, afterUp string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(emr.backup, "emr-before-migrate-down-middle-names-*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("backups before down: %v %v", files, err)
	}
	r, err := backup.OpenSQL(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	created := regexp.MustCompile("(?m)^CREATE TABLE `([^`]+)`").FindAllStringSubmatch(string(text), -1)
	var names []string
	for _, m := range created {
		names = append(names, m[1])
	}
	if slices.Sort(names); !slices.Equal(names, []string{ProgressTable, "emrkit_undo_middle_names"}) {
		t.Fatalf("the backup before down holds %v, want the progress and undo tables only", names)
	}
	if _, err := backup.Restore(t.Context(), backup.RestoreOptions{Database: emr.cfg, File: files[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := emr.db.Exec("UPDATE demographic d JOIN emrkit_undo_middle_names u USING (demographic_no)" +
		" SET d.first_name = u.new_first_name, d.middleNames = u.new_middleNames" +
		" WHERE BINARY d.first_name <=> BINARY u.old_first_name AND BINARY d.middleNames <=> BINARY u.old_middleNames"); err != nil {
		t.Fatal(err)
	}
	if emr.dump() != afterUp {
		t.Fatal("the undo table in the backup does not reverse down")
	}
	if _, err := emr.db.Exec("DROP TABLE emrkit_undo_middle_names, " + ProgressTable); err != nil {
		t.Fatal(err)
	}
}
