package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp"
)

// TestVerifyRestore: a backup (plain and encrypted) restores into the scratch database with
// every table's data identical; the same backup with its last KB cut off fails, naming the
// table where reading stopped; the scratch database is gone afterwards either way.
func TestVerifyRestore(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_vr")
	db := srv.DB(t, "oscar_vr")
	oscarfixture.Create(t, db, false)
	for _, q := range demofixture.Statements(5000, 3) {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "backups")
	ks, err := pgp.GenerateKey("Verify Test <verify@example.org>", pgp.Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	kd := t.TempDir()
	os.WriteFile(filepath.Join(kd, "public.asc"), ks.Public, 0o600)
	os.WriteFile(filepath.Join(kd, "private.asc"), ks.Private, 0o600)
	os.WriteFile(filepath.Join(kd, "pass"), ks.Passphrase, 0o600)
	public, err := ReadPublicKey(filepath.Join(kd, "public.asc"))
	if err != nil {
		t.Fatal(err)
	}
	private, err := ReadPrivateKey(filepath.Join(kd, "private.asc"), filepath.Join(kd, "pass"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "enc", Recipients: public})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file string
		open bool
	}{{plain, false}, {encrypted, true}} {
		k := private
		if !c.open {
			k = nil
		}
		res, err := VerifyRestore(ctx, cfg, c.file, k)
		if err != nil || !res.OK || res.Tables != 3 || res.Rows != 5000+3+1 {
			t.Fatalf("%s: %+v %v", filepath.Base(c.file), res, err)
		}
		t.Logf("%s: %d tables, %d rows restored identically in %.2fs", filepath.Base(c.file), res.Tables, res.Rows, res.Seconds)
	}
	if ok, _, _ := Exists(ctx, cfg, ScratchDatabase); ok {
		t.Fatal("the scratch database was left behind")
	}

	for _, f := range []string{plain, encrypted} {
		data, _ := os.ReadFile(f)
		cut := filepath.Join(t.TempDir(), filepath.Base(f))
		os.WriteFile(cut, data[:len(data)-1024], 0o600)
		res, err := VerifyRestore(ctx, cfg, cut, private)
		if err != nil || res.OK || !regexp.MustCompile(`is damaged: (the file ends early: it is cut|its OpenPGP message is cut or was altered \(.*\)) \(line \d+, byte \d+ of its SQL, table \w+\)`).MatchString(res.Problem) {
			t.Fatalf("%s with its last KB cut: %+v %v", filepath.Base(f), res, err)
		}
		t.Logf("cut %s: %s", filepath.Base(f), res.Problem)
	}
	if ok, _, _ := Exists(ctx, cfg, ScratchDatabase); ok {
		t.Fatal("the scratch database was left behind after a failed test")
	}
}

// TestVerifyHundredThousandPatients: the restore test of a clinic-sized backup (100,000
// patients) reports every table identical.
func TestVerifyHundredThousandPatients(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_big")
	oscarfixture.Create(t, srv.DB(t, "oscar_big"), false)
	demofixture.Create(t, srv.DB(t, "oscar_big"), 100_000, 7)
	file, err := Write(ctx, Options{Database: cfg, Dir: t.TempDir(), Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyRestore(ctx, cfg, file, nil)
	if err != nil || !res.OK || res.Rows != 100_000+4 {
		t.Fatalf("%+v %v", res, err)
	}
	t.Logf("100,000 patients: %d tables, %d rows identical in %.1fs", res.Tables, res.Rows, res.Seconds)
}

// TestVerifyComparesEveryRow: a backup whose one patient row does not come back as written —
// a first name too long for its column, cut by the restore (the dump's session is not strict)
// — fails, naming the table. mariadb-dump 10.11 writes a row a line: every one is compared.
func TestVerifyComparesEveryRow(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_rows")
	db := srv.DB(t, "oscar_rows")
	oscarfixture.Create(t, db, false)
	demofixture.Create(t, db, 1000, 5)
	db.Exec("UPDATE demographic SET first_name = 'Rowmarker' WHERE demographic_no = 777")
	file, err := Write(ctx, Options{Database: cfg, Dir: t.TempDir(), Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenSQL(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	sql, _ := io.ReadAll(r)
	r.Close()
	if n := bytes.Count(sql, []byte("\n(")); n < 1000 {
		t.Fatalf("the dump has %d row lines; this test expects one row a line", n)
	}
	long := bytes.Replace(sql, []byte("'Rowmarker'"), []byte("'"+strings.Repeat("x", 60)+"'"), 1)
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(long)
	zw.Close()
	changed := filepath.Join(t.TempDir(), filepath.Base(file))
	os.WriteFile(changed, b.Bytes(), 0o600)
	res, err := VerifyRestore(ctx, cfg, changed, nil)
	if err != nil || res.OK || res.Problem != "restored data differs from the backup in table(s) demographic" {
		t.Fatalf("a row cut by the restore: %+v %v", res, err)
	}
}

// TestVerifyRoutinesTriggersViewsEvents: a dump with a procedure and a function (DELIMITER ;;,
// bodies holding ';', quotes and comments), a trigger, a view and an event is read statement
// by statement as the mariadb client does, and restores.
func TestVerifyRoutinesTriggersViewsEvents(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_obj")
	db := srv.DB(t, "oscar_obj")
	oscarfixture.Create(t, db, false)
	demofixture.Create(t, db, 200, 9)
	for _, q := range []string{
		"CREATE PROCEDURE p_count(OUT n INT) BEGIN\n  -- counts; patients\n  SELECT COUNT(*) INTO n FROM demographic WHERE first_name <> 'a;b'; /* done; */\n  SET n = n + 1;\nEND",
		"CREATE FUNCTION f_name(x VARCHAR(30)) RETURNS VARCHAR(40) DETERMINISTIC RETURN CONCAT('\"', x, '\";')",
		"CREATE TRIGGER t_sec BEFORE UPDATE ON security FOR EACH ROW SET NEW.pin = IF(NEW.pin = ';', NULL, NEW.pin)",
		"CREATE VIEW v_names AS SELECT demographic_no, first_name FROM demographic WHERE last_name LIKE '%;%' OR 1",
		"CREATE EVENT e_tick ON SCHEDULE EVERY 1 DAY DISABLE DO UPDATE security SET pin = pin WHERE 0",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	file, err := Write(ctx, Options{Database: cfg, Dir: t.TempDir(), Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyRestore(ctx, cfg, file, nil)
	if err != nil || !res.OK {
		t.Fatalf("%+v %v", res, err)
	}
}
