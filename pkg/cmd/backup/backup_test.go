package backup_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/cmd/root"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/plan"
)

type env struct {
	t                       *testing.T
	srv                     *mariadbtest.Server
	dir, config, backups    string
	public, private, passph string
}

// newEnv: database oscar_15 with patients and OSCAR's security tables; an export key pair
// generated as `pgp setup` does, its public half configured (pgp.mode public-key).
func newEnv(t *testing.T, srv *mariadbtest.Server, backupDir string) *env {
	t.Helper()
	return newEnvRows(t, srv, backupDir, 5000)
}

// newEnvRows is newEnv with rows patients.
func newEnvRows(t *testing.T, srv *mariadbtest.Server, backupDir string, rows int) *env {
	t.Helper()
	cfg := srv.CreateDatabase(t, "oscar_15")
	db := srv.DB(t, "oscar_15")
	demofixture.Create(t, db, rows, 11)
	oscarfixture.Create(t, db, true)
	dir := t.TempDir()
	ks, err := pgp.GenerateKey("Clinic Backups <root@localhost>", pgp.Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, dir: dir, config: filepath.Join(dir, "emrkit.yaml"), backups: backupDir,
		public: filepath.Join(dir, "export.pub.asc"), private: filepath.Join(dir, "export.sec.asc"), passph: filepath.Join(dir, "export.pass")}
	if e.backups == "" {
		e.backups = filepath.Join(dir, "backups")
	}
	os.WriteFile(e.public, ks.Public, 0o644)
	os.WriteFile(e.private, ks.Private, 0o600)
	os.WriteFile(e.passph, ks.Passphrase, 0o600)
	yaml := fmt.Sprintf("database: {socket: %s, name: oscar_15}\npgp: {mode: public-key, public_key: %s}\nfirewall: {enable: false}\n"+
		"paths: {state_dir: %s/state, backup_dir: %s, cron_file: %s/cron}\n", cfg.Socket, e.public, dir, e.backups, dir)
	os.WriteFile(e.config, []byte(yaml), 0o600)
	return e
}

// run executes `emrkit ARGS...` through the real command tree with backup and restore added,
// as root will wire them, without a terminal.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{Version: "0.4.0-1", In: strings.NewReader(""), Out: &out, Err: &errb, Host: plan.Host{ConfigPath: e.config}}
	cmd := root.New(f)
	cmd.SetArgs(append([]string{"--config", e.config}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	if err != nil && err.Error() != "" {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), cmdutil.ExitCode(err)
}

func (e *env) checksums(db string) string {
	var b strings.Builder
	for _, table := range []string{"demographic", "security", "SecurityArchive"} {
		fmt.Fprintf(&b, "%s=%s ", table, e.srv.Checksum(e.t, db, table))
	}
	return b.String()
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupRestore(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "")
	want := e.checksums("oscar_15")

	out, errs, code := e.run("backup")
	plain := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(plain, e.backups+"/oscar_15-backup-") || !strings.HasSuffix(plain, ".sql.gz") {
		t.Fatalf("backup: %d %q %q", code, out, errs)
	}
	out, errs, code = e.run("backup", "--encrypt")
	sealed := strings.TrimSpace(out)
	if code != 0 || !strings.HasSuffix(sealed, ".sql.gz.pgp") {
		t.Fatalf("backup --encrypt: %d %q %q", code, out, errs)
	}
	for _, p := range []string{plain, sealed} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi.Mode(), err)
		}
	}

	// `emrkit pgp decrypt` opens the encrypted backup with the export private key.
	opened := filepath.Join(t.TempDir(), "opened.sql.gz")
	if _, errs, code := e.run("pgp", "decrypt", sealed, "-o", opened, "--key", e.private, "--passphrase-file", e.passph); code != 0 {
		t.Fatalf("pgp decrypt: %d %q", code, errs)
	}
	data, _ := os.ReadFile(opened)
	keys, err := backup.ReadPrivateKey(e.private, e.passph)
	if err != nil {
		t.Fatal(err)
	}
	r, err := backup.OpenSQL(sealed, keys)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := io.ReadAll(r)
	r.Close()
	if sql := gunzip(t, data); !bytes.Equal(sql, ours) || !bytes.Contains(sql, []byte("-- Dump completed")) {
		t.Fatal("pgp decrypt's plaintext is not the dump")
	}

	// Restore asks first; without a terminal it needs --yes, and nothing happens before.
	if _, errs, code := e.run("restore", plain, "--database", "scratch"); code != 1 || !strings.Contains(errs, "no terminal to confirm on; add --yes") {
		t.Fatalf("restore without --yes: %d %q", code, errs)
	}
	if exists, _, _ := backup.Exists(context.Background(), srvConfig(srv), "scratch"); exists {
		t.Fatal("restore created the database before confirmation")
	}
	if out, errs, code := e.run("restore", plain, "--database", "scratch", "--yes"); code != 0 || !strings.Contains(out, "restored "+plain+" into scratch") {
		t.Fatalf("restore: %d %q %q", code, out, errs)
	}
	if got := e.checksums("scratch"); got != want {
		t.Fatalf("checksums after restore:\n%s\nwant\n%s", got, want)
	}
	if _, errs, code := e.run("restore", sealed, "--database", "scratch2", "--yes"); code != 1 || !strings.Contains(errs, "the backup is encrypted; give the export private key") {
		t.Fatalf("encrypted restore without a key: %d %q", code, errs)
	}
	if _, errs, code := e.run("restore", sealed, "--database", "scratch2", "--yes", "--key", e.private, "--passphrase-file", e.passph); code != 0 {
		t.Fatalf("encrypted restore: %d %q", code, errs)
	}
	if got := e.checksums("scratch2"); got != want {
		t.Fatalf("checksums after encrypted restore:\n%s\nwant\n%s", got, want)
	}

	// Over the live database: what is there is backed up first.
	srv.DB(t, "oscar_15").Exec("UPDATE security SET pin = '0000'")
	out, errs, code = e.run("restore", plain, "--yes")
	if code != 0 || !strings.Contains(errs, "backed up oscar_15 to "+e.backups+"/oscar_15-before-restore-") {
		t.Fatalf("restore over the live database: %d %q %q", code, out, errs)
	}
	if got := e.checksums("oscar_15"); got != want {
		t.Fatal("live database not restored")
	}
	out, _, code = e.run("restore", plain, "--dry-run")
	if code != 0 || !strings.Contains(out, "would restore "+plain+" into database oscar_15 (3 tables), replacing the tables the backup holds") {
		t.Fatalf("restore --dry-run: %d %q", code, out)
	}

	// Retention keeps the newest N manual backups, never the safety backups.
	for range 3 {
		if _, errs, code := e.run("backup", "--keep", "2"); code != 0 {
			t.Fatal(errs)
		}
	}
	all, _ := backup.List(e.backups)
	manual := 0
	for _, f := range all {
		if f.Label == backup.ManualLabel {
			manual++
		}
	}
	if manual != 2 || len(all) != 3 {
		t.Fatalf("after --keep 2: %+v", all)
	}
}

func srvConfig(srv *mariadbtest.Server) config.Database {
	return config.Database{Socket: srv.Socket, User: "root", Port: config.P(3306)}
}

// tmpfs mounts a small tmpfs for the test and unmounts it at the end.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func TestBadInput(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backup", "--keep", "-1"}, 2, `"-1" for "--keep" flag: backups kept (0 keeps all) must be 0..100000`},
		{[]string{"backup", "--keep", "99999999999999999999"}, 2, `flag: backups kept (0 keeps all) must be 0..100000`},
		{[]string{"backup", "--key", e.public}, 2, "--key is the key to encrypt to: add --encrypt"},
		{[]string{"backup", "extra"}, 2, "unknown command"},
		{[]string{"backup", "--encrypt", "--key", e.passph}, 1, "export key " + e.passph},
		{[]string{"restore"}, 2, "give the backup FILE, or --from offsite [SNAPSHOT]"},
		{[]string{"restore", "a", "b"}, 2, "restore takes one backup FILE or SNAPSHOT, not 2"},
		{[]string{"restore", "--from", "offsite"}, 2, "backup.offsite.repository is not set"},
		{[]string{"restore", "x.sql.gz", "--database", "a;b"}, 2, `--database: "a;b" is not a valid identifier`},
		{[]string{"restore", "/nonexistent.sql.gz", "--yes"}, 1, "restore: there is no file /nonexistent.sql.gz; emrkit's backups are in "},
	} {
		_, errs, code := e.run(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: %d %q, want %d %q", c.args, code, errs, c.code, c.want)
		}
	}

	// --encrypt with no export key configured.
	noKey := strings.Replace(mustRead(t, e.config), "pgp: {mode: public-key, public_key: "+e.public+"}", "pgp: {mode: none}", 1)
	os.WriteFile(e.config, []byte(noKey), 0o600)
	if _, errs, code := e.run("backup", "--encrypt"); code != 1 || !strings.Contains(errs, "--encrypt needs a public key and pgp.mode is none") {
		t.Fatalf("no export key: %d %q", code, errs)
	}

	// An unwritable backup dir and a full one: exit 1, no file that looks like a backup.
	for _, c := range []struct{ opts, want string }{
		{"size=1m,ro", "(read-only file system); set paths.backup_dir to a writable directory"},
		{"size=64k", "no space left on device (check free space in "},
	} {
		dir := tmpfs(t, c.opts)
		cfg := strings.Replace(mustRead(t, e.config), "backup_dir: "+e.backups, "backup_dir: "+dir, 1)
		os.WriteFile(e.config, []byte(cfg), 0o600)
		if _, errs, code := e.run("backup"); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("backup into %s: %d %q", c.opts, code, errs)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s left %v", c.opts, entries)
		}
		e.backups = dir
	}

	srv.Stop()
	if _, errs, code := e.run("backup"); code != 1 || !strings.Contains(errs, "cannot reach the database server") {
		t.Fatalf("database down: %d %q", code, errs)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
