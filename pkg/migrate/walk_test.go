package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/progress"
)

// TestUpWritesOnlyWhatItRecorded: OSCAR edits a row between a batch's record (a plain read)
// and its write. The write skips the edited row, the batch rolls back and runs again, so
// the edit is migrated rather than overwritten, its undo record holds the edited value, and
// down gives back the table with the edit.
func TestUpWritesOnlyWhatItRecorded(t *testing.T) {
	srv := mariadbtest.Start(t)
	f := newFixture(t, srv, "emr", "", 2000)
	other := srv.DB(t, "emr")
	var k int64
	if err := f.db.QueryRow("SELECT MIN(demographic_no) FROM demographic WHERE " + split).Scan(&k); err != nil {
		t.Fatal(err)
	}
	env := f.env()
	env.Workers, env.BatchSize = 1, 500
	calls := 0
	env.beforeApply = func() {
		if calls++; calls > 1 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Blocks (and fails the test) if the record had locked the row.
		if _, err := other.ExecContext(ctx, "UPDATE demographic SET first_name = 'Raced  Edit', middleNames = NULL WHERE demographic_no = ?", k); err != nil {
			t.Errorf("OSCAR's edit during the batch: %v", err)
		}
	}
	if _, err := f.up(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	var first, middle, oldFirst string
	f.db.QueryRow("SELECT first_name, middleNames FROM demographic WHERE demographic_no = ?", k).Scan(&first, &middle)
	f.db.QueryRow("SELECT old_first_name FROM emrkit_undo_middle_names WHERE demographic_no = ?", k).Scan(&oldFirst)
	if first != "Raced" || middle != "Edit" || oldFirst != "Raced  Edit" {
		t.Fatalf("row %d edited during its batch: first_name %q, middleNames %q, recorded old first_name %q; want the edit migrated and recorded",
			k, first, middle, oldFirst)
	}
	if calls < 2 {
		t.Fatalf("the raced batch did not run again (%d calls)", calls)
	}
	if _, err := f.down(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	var got string
	f.db.QueryRow("SELECT CONCAT(first_name, '|', COALESCE(middleNames, 'NULL')) FROM demographic WHERE demographic_no = ?", k).Scan(&got)
	if got != "Raced  Edit|NULL" {
		t.Fatalf("down gave row %d back as %q, want the edit as OSCAR wrote it", k, got)
	}
}

// TestDownKeepsEditsInEverySegment: down walks the undo table on two connections; rows
// edited since the migration in either segment are kept, and the report's sample lists both.
func TestDownKeepsEditsInEverySegment(t *testing.T) {
	srv := mariadbtest.Start(t)
	orig := newFixture(t, srv, "orig", "", fixtureRows)
	emr := newFixture(t, srv, "emr", "orig", 0)
	env := emr.env()
	env.BatchSize = 300
	if _, err := emr.up(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	var a, z int64
	emr.db.QueryRow("SELECT MIN(demographic_no), MAX(demographic_no) FROM emrkit_undo_middle_names").Scan(&a, &z)
	if _, err := emr.db.Exec("UPDATE demographic SET first_name = 'Edited' WHERE demographic_no IN (?, ?)", a, z); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	segments := 0
	env.afterBatch = func() { // runs on both workers
		mu.Lock()
		defer mu.Unlock()
		if segments == 0 {
			emr.db.QueryRow("SELECT COUNT(*) FROM " + ProgressTable + " WHERE `segment` > 0").Scan(&segments)
		}
	}
	rep, err := emr.down(env, "middle-names")
	if err != nil || rep.Kept != 1 {
		t.Fatalf("down: %+v %v", rep, err)
	}
	if segments != 2 {
		t.Fatalf("down ran on %d segments, want 2", segments)
	}
	if want := fmt.Sprintf("kept 2 rows edited or deleted since the migration (demographic_no %d, %d)", a, z); !strings.Contains(emr.out.String(), want) {
		t.Fatalf("report lacks %q:\n%s", want, emr.out)
	}
	o, cols := table(t, orig.db)
	g, _ := table(t, emr.db)
	fi := col(cols, "first_name")
	for k := range o {
		if k != a && k != z && !eqRow(o[k], g[k]) {
			t.Fatalf("row %d not restored", k)
		}
	}
	if *g[a][fi] != "Edited" || *g[z][fi] != "Edited" {
		t.Fatal("an edited row was overwritten")
	}
}

func eqRow(a, b row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !eq(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestDownResumesAnEarlierReleasesProgress: a down interrupted by a release that walked on
// one connection left only the migration's row (state undoing, last_key, restored). This
// release resumes it after last_key as one segment, and the counts add up.
func TestDownResumesAnEarlierReleasesProgress(t *testing.T) {
	srv := mariadbtest.Start(t)
	orig := newFixture(t, srv, "orig", "", 3000)
	emr := newFixture(t, srv, "emr", "orig", 0)
	before := orig.dump()
	env := emr.env()
	if _, err := emr.up(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	m, _ := Lookup("middle-names")
	var total, half int64
	emr.db.QueryRow("SELECT COUNT(*) FROM emrkit_undo_middle_names").Scan(&total)
	emr.db.QueryRow("SELECT demographic_no FROM emrkit_undo_middle_names ORDER BY demographic_no LIMIT 1 OFFSET ?", total/2).Scan(&half)
	res, err := emr.db.Exec(m.sqlRestore(m.UndoTable()), 0, half)
	if err != nil {
		t.Fatal(err)
	}
	restored, _ := res.RowsAffected()
	if _, err := emr.db.Exec("UPDATE "+ProgressTable+" SET `state` = 'undoing', `last_key` = ?, `restored` = ?"+mainRow, half, restored, m.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := emr.down(env, "middle-names"); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("middle-names: resuming undo after demographic_no %d (%s rows restored so far)", half, progress.Group(restored)); !strings.Contains(emr.out.String(), want) {
		t.Fatalf("no %q in:\n%s", want, emr.out)
	}
	if want := fmt.Sprintf("restored %s rows", progress.Group(total)); !strings.Contains(emr.out.String(), want) {
		t.Fatalf("no %q in:\n%s", want, emr.out)
	}
	if emr.dump() != before {
		t.Fatal("resumed down did not give back the original table")
	}
}

// TestBinlogFormats: a server logging statements refuses writes under READ COMMITTED, so up
// and down keep REPEATABLE READ there; with MIXED (Debian's default once log_bin is on) they
// run READ COMMITTED, logged as rows. Both give back the original table.
func TestBinlogFormats(t *testing.T) {
	for _, format := range []string{"STATEMENT", "MIXED"} {
		t.Run(format, func(t *testing.T) {
			srv := mariadbtest.StartWith(t, mariadbtest.Options{Args: []string{"--log-bin=emr-bin", "--binlog-format=" + format}})
			orig := newFixture(t, srv, "orig", "", 2000)
			emr := newFixture(t, srv, "emr", "orig", 0)
			before := orig.dump()
			env := emr.env()
			env.BatchSize = 500
			for _, name := range Names() {
				if _, err := emr.up(env, name); err != nil {
					t.Fatalf("up %s: %v", name, err)
				}
			}
			for _, name := range Names() {
				if _, err := emr.down(env, name); err != nil {
					t.Fatalf("down %s: %v", name, err)
				}
			}
			if emr.dump() != before {
				t.Fatalf("up and down under binlog_format=%s did not give back the original table", format)
			}
		})
	}
}
