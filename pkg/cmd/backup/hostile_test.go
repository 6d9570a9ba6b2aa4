package backup_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
)

// marker is planted in a patient's name: no output of emrkit may ever show it.
const marker = "ZZPATIENTMARKER"

// rewrite writes a backup named name in dir holding src's SQL changed by edit.
func rewrite(t *testing.T, src, dir, name string, edit func([]byte) []byte) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(edit(gunzip(t, data)))
	zw.Close()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// markerLine is the dump's line holding the marker, and its number.
func markerLine(t *testing.T, sql []byte) (string, int) {
	t.Helper()
	for i, l := range strings.Split(string(sql), "\n") {
		if strings.Contains(l, marker) {
			return l, i + 1
		}
	}
	t.Fatal("the marker is not in the dump")
	return "", 0
}

// TestNoPatientDataInFailures: backups whose patient table fails to restore — a garbled
// INSERT, a duplicated one — fail verify (exit 3) and restore (exit 1) with one bounded line
// naming the table and the line; the marker in the patient's name appears in no output of
// verify, restore, doctor or doctor --json, nor in any file under the state dir. A restore-test
// record written by 0.6.0, quoting the rows, is shown without them.
func TestNoPatientDataInFailures(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "")
	db := srv.DB(t, "oscar_15")
	if _, err := db.Exec("UPDATE demographic SET first_name = ?, last_name = ? WHERE demographic_no = 4321", marker+" Jane", marker); err != nil {
		t.Fatal(err)
	}
	out, errs, code := e.run("backup")
	if code != 0 {
		t.Fatalf("backup: %d %s", code, errs)
	}
	good := strings.TrimSpace(out)
	// Named as the newest backups, so doctor looks at them.
	name := func(n int) string { return fmt.Sprintf("oscar_15-backup-20991231T00000%d.000Z.sql.gz", n) }
	type corrupt struct {
		what string
		edit func([]byte) []byte
		want *regexp.Regexp // in the message, beside the table and line
		// exact: the message names the line of the patient's row, not only the statement's
		exact bool
	}
	for i, c := range []corrupt{
		{"a garbled INSERT", func(sql []byte) []byte {
			return bytes.Replace(sql, []byte(",'"+marker+" Jane'"), []byte(",,'"+marker+" Jane'"), 1)
		}, regexp.MustCompile(`ERROR 1064 \(42000\): You have an error in your SQL syntax`), true},
		{"a duplicated INSERT", func(sql []byte) []byte {
			l, _ := markerLine(t, sql)
			return bytes.Replace(sql, []byte(l+"\n"), []byte(l+"\n"+l+"\n"), 1)
		}, // Found at the INSERT or, with UNIQUE_CHECKS=0, at its transaction's COMMIT.
			regexp.MustCompile(`ERROR 1062 \(23000\): Duplicate entry \[value withheld\] for key 'PRIMARY'|ERROR 1180 \(HY000\): Got error 1 \[value withheld\] during COMMIT`), false},
	} {
		file := rewrite(t, good, e.backups, name(i), c.edit)
		sql := gunzip(t, []byte(mustRead(t, file)))
		_, line := markerLine(t, sql)
		at := `: `
		if c.exact {
			at = ` at line ` + strconv.Itoa(line) + `: `
		}
		where := regexp.MustCompile(`the statement at line \d+ \(table demographic\) failed` + at)

		var outputs []string
		vout, verr, code := e.run("backup", "verify", file)
		if code != 3 || !where.MatchString(verr) || !c.want.MatchString(verr) {
			t.Errorf("%s: verify: exit %d, %q (the marker is on line %d)", c.what, code, verr, line)
		}
		outputs = append(outputs, vout, verr)
		jout, jerr, code := e.run("backup", "verify", file, "--json")
		if code != 3 {
			t.Errorf("%s: verify --json: exit %d", c.what, code)
		}
		outputs = append(outputs, jout, jerr)
		rout, rerr, code := e.run("restore", file, "--database", "scratch", "--yes")
		// scratch is new: restore created it, and drops it again after the failure.
		if code != 1 || !where.MatchString(rerr) || !strings.Contains(rerr, "nothing was restored (the database emrkit created for it is removed again)") {
			t.Errorf("%s: restore: exit %d, %q", c.what, code, rerr)
		}
		outputs = append(outputs, rout, rerr)
		for _, args := range [][]string{{"doctor"}, {"doctor", "--json"}} {
			dout, derr, _ := e.run(args...)
			if !strings.Contains(dout, "table demographic") {
				t.Errorf("%s: %v does not show the failed restore test: %s", c.what, args, dout)
			}
			outputs = append(outputs, dout, derr)
		}
		outputs = append(outputs, treeText(t, filepath.Join(e.dir, "state")))
		for _, o := range outputs {
			if strings.Contains(o, marker) {
				t.Fatalf("%s: the patient's name is in emrkit's output:\n%s", c.what, o)
			}
		}
		for _, msg := range []string{verr, lastLine(rerr)} {
			if strings.Count(strings.TrimSpace(msg), "\n") > 0 || len(msg) > 600 {
				t.Errorf("%s: not one bounded line (%d bytes): %q", c.what, len(msg), msg)
			}
		}
		t.Logf("%s: %s", c.what, strings.TrimSpace(verr))
	}

	// A record from emrkit 0.6.0, which quoted the failing statement.
	record, _ := json.Marshal(backup.VerifyResult{File: good, Problem: "restoring it failed in table security: ERROR 1064 (42000) at line 77: You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '" + marker + " Jane','" + marker + "',1961 at line 1"})
	os.WriteFile(filepath.Join(e.dir, "state", backup.VerifyRecord), record, 0o600)
	for _, args := range [][]string{{"doctor"}, {"doctor", "--json"}} {
		if dout, _, _ := e.run(args...); strings.Contains(dout, marker) || !strings.Contains(dout, "near [value withheld]") {
			t.Errorf("%v shows an old record as: %s", args, dout)
		}
	}
}

// TestBackupFilesThatAreNot: an empty file and random bytes are damaged backups (exit 3) that
// say what they are, for verify (recorded for doctor) and restore.
func TestBackupFilesThatAreNot(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "")
	empty := filepath.Join(t.TempDir(), "oscar_15-backup-20260101T000000.000Z.sql.gz")
	os.WriteFile(empty, nil, 0o600)
	random := filepath.Join(t.TempDir(), "oscar_15-backup-20260101T000001.000Z.sql.gz.pgp")
	noise := make([]byte, 4096)
	rand.Read(noise)
	noise[0] = 0x20 // not a packet tag, nor gzip
	os.WriteFile(random, noise, 0o600)
	for _, c := range []struct{ file, want string }{
		{empty, "is damaged: the file is empty (0 bytes); take a new backup with emrkit backup"},
		{random, "is damaged: it is neither a gzip-compressed dump nor an OpenPGP message, so not a backup emrkit wrote"},
	} {
		for _, args := range [][]string{{"backup", "verify", c.file}, {"restore", c.file, "--yes"}} {
			_, errs, code := e.run(args...)
			if code != 3 || !strings.Contains(errs, c.want) || strings.Contains(errs, "encrypted") || strings.Contains(errs, "EOF") {
				t.Errorf("%v: exit %d, %q", args, code, errs)
			}
		}
		last, ok, err := backup.LastVerify(filepath.Join(e.dir, "state"))
		if err != nil || !ok || last.OK || last.File != c.file || !strings.Contains(last.Problem, c.want) {
			t.Errorf("the verify of %s was recorded as %+v %v", c.file, last, err)
		}
	}
}

// TestRestoreKnowsWhereADumpCameFrom: a dump of another database is not restored into the
// configured one unless the target is named; named, it is.
func TestRestoreKnowsWhereADumpCameFrom(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "")
	other := srv.CreateDatabase(t, "oscar_test")
	srv.DB(t, "oscar_test").Exec("CREATE TABLE demographic (demographic_no int PRIMARY KEY)")
	srv.DB(t, "oscar_test").Exec("INSERT INTO demographic VALUES (1)")
	file, err := backup.Dump(t.Context(), other, e.backups, "backup")
	if err != nil {
		t.Fatal(err)
	}
	want := e.checksums("oscar_15")
	_, errs, code := e.run("restore", file, "--yes")
	if code != 2 || !strings.Contains(errs, "holds database oscar_test, not oscar_15; to restore it into oscar_15 anyway give --database oscar_15, or --database oscar_test") ||
		!strings.Contains(errs, "nothing was restored") {
		t.Fatalf("restore of another database's dump: exit %d, %q", code, errs)
	}
	if e.checksums("oscar_15") != want {
		t.Fatal("oscar_15 changed")
	}
	// Renamed to look like oscar_15's: the dump's own header still says where it is from.
	renamed := filepath.Join(t.TempDir(), "oscar_15-backup-20260101T000000.000Z.sql.gz")
	os.Link(file, renamed)
	if _, errs, code := e.run("restore", renamed, "--yes"); code != 2 || !strings.Contains(errs, "holds database oscar_test") {
		t.Fatalf("renamed dump: exit %d, %q", code, errs)
	}
	if _, errs, code := e.run("restore", file, "--database", "oscar_copy", "--yes"); code != 0 {
		t.Fatalf("named target: exit %d, %q", code, errs)
	}
	if _, errs, code := e.run("restore", file, "--database", "oscar_15", "--yes"); code != 0 {
		t.Fatalf("named target (the configured one): exit %d, %q", code, errs)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// treeText is every file's content under dir, for searching.
func treeText(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			b.Write(data)
		}
		return nil
	})
	return b.String()
}
