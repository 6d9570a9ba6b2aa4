package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
)

// emrDB makes database name look like a clinic's: 10,000 patients, OSCAR's security tables,
// and a trigger, a procedure and an event, which a backup must carry too.
func emrDB(t *testing.T, srv *mariadbtest.Server, name string) (config.Database, *sql.DB) {
	t.Helper()
	cfg := srv.CreateDatabase(t, name)
	db := srv.DB(t, name)
	demofixture.Create(t, db, 10_000, 7)
	oscarfixture.Create(t, db, true)
	for _, q := range []string{
		"CREATE TRIGGER demographic_touch BEFORE UPDATE ON demographic FOR EACH ROW SET NEW.lastUpdateDate = NOW()",
		"CREATE PROCEDURE count_rostered(OUT n INT) SELECT COUNT(*) INTO n FROM demographic WHERE roster_status = 'RO'",
		"CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM security WHERE 1 = 0",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return cfg, db
}

// objects lists a database's tables with their checksums, and its routines, triggers and
// events with their definitions.
func objects(t *testing.T, srv *mariadbtest.Server, db *sql.DB, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, q := range []string{
		"SELECT CONCAT('table ', TABLE_NAME), '' FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
		"SELECT CONCAT('routine ', ROUTINE_NAME), ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
		"SELECT CONCAT('trigger ', TRIGGER_NAME), ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
		"SELECT CONCAT('event ', EVENT_NAME), EVENT_DEFINITION FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
	} {
		rows, err := db.Query(q, name)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, v string
			rows.Scan(&k, &v)
			if table, ok := strings.CutPrefix(k, "table "); ok {
				v = srv.Checksum(t, name, table)
			}
			out[k] = v
		}
		rows.Close()
	}
	if len(out) < 6 {
		t.Fatalf("%s holds too little to prove anything: %v", name, out)
	}
	return out
}

func sameObjects(t *testing.T, want, got map[string]string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("objects differ:\nwant %v\ngot  %v", want, got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: want %q, got %q", k, v, got[k])
		}
	}
}

// testKey generates an export key pair as `pgp setup` does (v4, Curve25519, locked) and
// writes it: public.asc, private.asc, pass.
func testKey(t *testing.T) (dir string, ks pgp.KeySet) {
	t.Helper()
	ks, err := pgp.GenerateKey("Backup Test <backup@example.org>", pgp.Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	for name, data := range map[string][]byte{"public.asc": ks.Public, "private.asc": ks.Private, "pass": ks.Passphrase} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, ks
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBackupRestore: a backup restored into a scratch database gives identical table
// checksums and the same routines, triggers and events; an encrypted one too, and gpg -d
// opens it.
func TestBackupRestore(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	cfg, db := emrDB(t, srv, "oscar_15")
	want := objects(t, srv, db, "oscar_15")
	dir := filepath.Join(t.TempDir(), "backups")

	plain, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(plain), "oscar_15-backup-") || !strings.HasSuffix(plain, PlainSuffix) {
		t.Fatalf("name %s", plain)
	}
	if _, err := Restore(ctx, RestoreOptions{Database: cfg, File: plain, Target: "scratch"}); err != nil {
		t.Fatal(err)
	}
	sameObjects(t, want, objects(t, srv, srv.DB(t, "scratch"), "scratch"))

	keys, ks := testKey(t)
	recipients, err := ReadPublicKey(filepath.Join(keys, "public.asc"))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: ManualLabel, Recipients: recipients})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(sealed)
	if !strings.HasSuffix(sealed, EncryptedSuffix) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v", sealed, fi.Mode())
	}
	raw, _ := os.ReadFile(sealed)
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) || bytes.Contains(raw, []byte("CREATE TABLE")) || bytes.Contains(raw, []byte("oscardoc")) {
		t.Fatal("the encrypted backup is readable without the key")
	}
	if _, err := OpenSQL(sealed, nil); err != ErrNeedKey {
		t.Fatalf("no key: %v", err)
	}
	private, err := ReadPrivateKey(filepath.Join(keys, "private.asc"), filepath.Join(keys, "pass"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenSQL(sealed, private)
	if err != nil {
		t.Fatal(err)
	}
	ours := readAll(t, r)
	r.Close()

	// The real gpg of Debian 12 decrypts it.
	home := pgptest.RootHome(t, pgptest.Dir(t), "gnupg")
	pgptest.GPG(t, home, bytes.NewReader(ks.Private), "--pinentry-mode", "loopback", "--passphrase-file", filepath.Join(keys, "pass"), "--import")
	compressed := pgptest.GPG(t, home, nil, "--pinentry-mode", "loopback", "--passphrase-file", filepath.Join(keys, "pass"), "--decrypt", sealed)
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatalf("gpg's plaintext is not gzip: %v", err)
	}
	if theirs := readAll(t, zr); !bytes.Equal(theirs, ours) || !bytes.Contains(ours, dumpCompleted) {
		t.Fatalf("gpg -d gave %d bytes, emrkit %d", len(theirs), len(ours))
	}

	if _, err := Restore(ctx, RestoreOptions{Database: cfg, File: sealed, Target: "scratch2", Keys: private}); err != nil {
		t.Fatal(err)
	}
	sameObjects(t, want, objects(t, srv, srv.DB(t, "scratch2"), "scratch2"))

	// Restoring over the live database replaces its tables with the backup's.
	if _, err := db.Exec("UPDATE security SET pin = '9999' WHERE user_name = 'oscardoc'"); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, RestoreOptions{Database: cfg, File: plain}); err != nil {
		t.Fatal(err)
	}
	sameObjects(t, want, objects(t, srv, db, "oscar_15"))

	if all, _ := List(dir); len(all) != 2 || all[0].Encrypted || !all[1].Encrypted || all[0].Label != ManualLabel {
		t.Fatalf("list: %+v", all)
	}
}

// TestRefusesDamagedBackups: a truncated or altered backup, a wrong key, no key: restore
// refuses before it touches the database, and leaves no database behind when it was to
// create one.
func TestRefusesDamagedBackups(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	cfg, db := emrDB(t, srv, "oscar_15")
	dir := t.TempDir()
	keys, _ := testKey(t)
	recipients, _ := ReadPublicKey(filepath.Join(keys, "public.asc"))
	private, _ := ReadPrivateKey(filepath.Join(keys, "private.asc"), filepath.Join(keys, "pass"))
	plain, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "x"})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "y", Recipients: recipients})
	if err != nil {
		t.Fatal(err)
	}
	db.Exec("UPDATE security SET pin = 'current' WHERE user_name = 'oscardoc'")
	want := objects(t, srv, db, "oscar_15")

	damaged := func(src string, cut func([]byte) []byte) string {
		b, _ := os.ReadFile(src)
		p := filepath.Join(t.TempDir(), filepath.Base(src))
		os.WriteFile(p, cut(b), 0o600)
		return p
	}
	half := func(b []byte) []byte { return b[:len(b)/2] }
	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		c[len(c)-100] ^= 0x55
		return c
	}
	// A dump that stopped early but was compressed cleanly: gzip is fine, SQL is not.
	var short bytes.Buffer
	zw := gzip.NewWriter(&short)
	zw.Write([]byte("-- MariaDB dump\nDROP TABLE IF EXISTS `security`;\n"))
	zw.Close()
	stopped := filepath.Join(t.TempDir(), "oscar_15-x-20260101T000000.000Z.sql.gz")
	os.WriteFile(stopped, short.Bytes(), 0o600)

	otherKeys, _ := testKey(t)
	wrong, _ := ReadPrivateKey(filepath.Join(otherKeys, "private.asc"), filepath.Join(otherKeys, "pass"))
	for _, c := range []struct {
		name, file string
		keys       openpgp.EntityList
		want       string
	}{
		{"truncated gzip", damaged(plain, half), nil, "is damaged: the file ends early: it is cut (line "},
		{"altered gzip", damaged(plain, flip), nil, "is damaged: its gzip checksum does not match"},
		{"dump stopped early", stopped, nil, "is damaged: it is cut: it does not end with mariadb-dump's"},
		{"truncated pgp", damaged(sealed, half), private, "is damaged: its OpenPGP message is cut or was altered"},
		{"altered pgp", damaged(sealed, flip), private, "is damaged: its gzip checksum does not match"},
		{"wrong key", sealed, wrong, "cannot decrypt"},
		{"no key", sealed, nil, "the backup is encrypted; give the export private key"},
	} {
		_, err := Restore(ctx, RestoreOptions{Database: cfg, File: c.file, Keys: c.keys})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was restored") {
			t.Errorf("%s: %v", c.name, err)
		}
		// Into a new database the backup is read once, loaded as it is checked: what was
		// loaded before the damage showed goes again with the database.
		_, err = Restore(ctx, RestoreOptions{Database: cfg, File: c.file, Keys: c.keys, Target: "oscar_new"})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was restored (the database emrkit created for it is removed again)") {
			t.Errorf("%s, into a new database: %v", c.name, err)
		}
		if there, _, err := Exists(ctx, cfg, "oscar_new"); there || err != nil {
			t.Errorf("%s: after the failed restore into a new database it is there (%v)", c.name, err)
		}
	}
	sameObjects(t, want, objects(t, srv, db, "oscar_15"))
	if _, err := ReadPrivateKey(filepath.Join(keys, "private.asc"), ""); err == nil || !strings.Contains(err.Error(), "give --passphrase-file") {
		t.Fatalf("locked key without passphrase: %v", err)
	}
	if _, err := ReadPublicKey(filepath.Join(keys, "pass")); err == nil {
		t.Fatal("a passphrase file accepted as a public key")
	}
}

// tmpfs mounts a small tmpfs (ro: read-only) for the test and unmounts it at the end.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

// TestBackupFailuresLeaveNothing: a full disk, a read-only backup dir, a database that is
// not there: a clear error, and nothing in the backup dir that looks like a backup.
func TestBackupFailuresLeaveNothing(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	cfg, _ := emrDB(t, srv, "oscar_15")
	keys, _ := testKey(t)
	recipients, _ := ReadPublicKey(filepath.Join(keys, "public.asc"))

	for _, enc := range []bool{false, true} {
		full := tmpfs(t, "size=64k,mode=0700")
		o := Options{Database: cfg, Dir: full, Label: ManualLabel}
		if enc {
			o.Recipients = recipients
		}
		_, err := Write(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "failed writing "+full+"/oscar_15-backup-") ||
			!strings.Contains(err.Error(), ": no space left on device (check free space in "+full+")") {
			t.Fatalf("full disk (encrypted %v): %v", enc, err)
		}
		if entries, _ := os.ReadDir(full); len(entries) != 0 {
			t.Fatalf("full disk left %v", entries)
		}
	}

	ro := tmpfs(t, "size=1m,ro")
	if _, err := Write(ctx, Options{Database: cfg, Dir: ro, Label: ManualLabel}); err == nil ||
		!strings.Contains(err.Error(), "cannot write in "+ro+" (read-only file system); set paths.backup_dir to a writable directory") {
		t.Fatalf("read-only dir: %v", err)
	}
	if _, err := Dump(ctx, cfg, filepath.Join(ro, "sub"), "x"); err == nil || !strings.Contains(err.Error(), "set paths.backup_dir to a writable directory") {
		t.Fatalf("uncreatable dir: %v", err)
	}

	dir := t.TempDir()
	missing := cfg
	missing.Name = "no_such_db"
	if _, err := Dump(ctx, missing, dir, "x"); err == nil || !strings.Contains(err.Error(), `database "no_such_db" does not exist`) {
		t.Fatalf("missing database: %v", err)
	}
	if _, err := Dump(ctx, cfg, dir, "bad label!"); err == nil || !strings.Contains(err.Error(), `label "bad label!"`) {
		t.Fatalf("bad label: %v", err)
	}
	srv.Stop()
	if _, err := Dump(ctx, cfg, dir, "x"); err == nil || !strings.Contains(err.Error(), "cannot reach the database server") {
		t.Fatalf("database down: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed backups left %v", entries)
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	var mine []string
	for i := range 5 {
		ts := base.Add(time.Duration(i) * 24 * time.Hour).Format(timeFormat)
		suffix := PlainSuffix
		if i%2 == 1 {
			suffix = EncryptedSuffix
		}
		mine = append(mine, touch("oscar_15-backup-"+ts+suffix))
	}
	others := []string{
		touch("oscar_15-before-undo-security-" + base.Format(timeFormat) + PlainSuffix),
		touch("oscar_15-before-backup-" + base.Format(timeFormat) + PlainSuffix),
		touch("other_db-backup-" + base.Format(timeFormat) + PlainSuffix),
		touch(".oscar_15-backup-" + base.Format(timeFormat) + PlainSuffix + ".partial-123"),
		touch("notes.txt"),
	}
	removed, err := Prune(dir, "oscar_15", ManualLabel, 2)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, " ") != strings.Join(mine[:3], " ") {
		t.Fatalf("removed %v, want the three oldest %v", removed, mine[:3])
	}
	for _, p := range append(mine[3:], others...) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s should be kept: %v", p, err)
		}
	}
	if _, err := Prune(dir, "oscar_15", ManualLabel, 0); err == nil {
		t.Fatal("keep 0 accepted")
	}
	if f, ok := Parse(others[0]); !ok || f.Label != "before-undo-security" || f.Database != "oscar_15" || !f.Time.Equal(base) {
		t.Fatalf("parse: %+v %v", f, ok)
	}
}

// TestWriteKeepsTheNewest: Write with Keep prunes older backups of its own label only.
func TestWriteKeepsTheNewest(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	cfg := srv.CreateDatabase(t, "oscar_15")
	oscarfixture.Create(t, srv.DB(t, "oscar_15"), false)
	dir := t.TempDir()
	clock := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Hour); return clock }
	safety, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "before-purge", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var last []string
	for range 4 {
		p, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: ManualLabel, Keep: 2, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		last = append(last, p)
	}
	all, _ := List(dir)
	var got []string
	for _, f := range all {
		got = append(got, f.Path)
	}
	if strings.Join(got, " ") != strings.Join([]string{safety, last[2], last[3]}, " ") {
		t.Fatalf("kept %v", got)
	}
}
