package backup_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/testbin"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
)

// bigEnv is newEnv with 100,000 patients, so that a backup or a restore test takes long
// enough to be stopped half-way.
func bigEnv(t *testing.T) (*env, *mariadbtest.Server) {
	srv := mariadbtest.Start(t)
	return newEnvRows(t, srv, "", 100_000), srv
}

// start runs the emrkit binary with args in the background, its temporary directory its own.
func (e *env) start(t *testing.T, bin string, args ...string) (*exec.Cmd, *bytes.Buffer, string) {
	tmp := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--config", e.config}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out, tmp
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestKilledBackupLeavesNoSecret: emrkit backup, connecting with a password, SIGKILLed
// half-way leaves the password in no file anywhere — the client had it on an inherited memfd —
// and in no process's argv or environment (watched every 0.5 ms); the next backup removes the
// partial file the kill left, and an option file of emrkit 0.6.0, saying so.
func TestKilledBackupLeavesNoSecret(t *testing.T) {
	e, srv := bigEnv(t)
	password := `kill-9 proof "pw#`
	root := srv.DB(t, "")
	for _, q := range []string{"CREATE USER 'backup'@'localhost' IDENTIFIED BY '" + password + "'",
		"GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON oscar_15.* TO 'backup'@'localhost'"} {
		if _, err := root.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	pwFile := filepath.Join(e.dir, "db.password")
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
	conf := strings.Replace(mustRead(t, e.config), "name: oscar_15}", "name: oscar_15, user: backup, password_file: "+pwFile+"}", 1)
	os.WriteFile(e.config, []byte(conf), 0o600)

	bin := testbin.Emrkit(t, "")
	watch := pgptest.WatchProcs(0)
	cmd, _, tmp := e.start(t, bin, "backup")
	partial := func() string {
		entries, _ := os.ReadDir(e.backups)
		for _, en := range entries {
			if strings.Contains(en.Name(), ".partial-") {
				if fi, err := en.Info(); err == nil && fi.Size() > 0 {
					return filepath.Join(e.backups, en.Name())
				}
			}
		}
		return ""
	}
	waitUntil(t, 30*time.Second, "the backup to be half-way", func() bool { return partial() != "" })
	cmd.Process.Kill()
	cmd.Wait()
	watch.Check(t, [][]byte{[]byte(password)}, "mariadb-dump")
	left := partial()
	if left == "" {
		t.Fatal("the backup finished before it could be killed")
	}
	for _, dir := range []string{e.backups, tmp, os.TempDir(), filepath.Join(e.dir, "state")} {
		entries, _ := os.ReadDir(dir)
		for _, en := range entries {
			p := filepath.Join(dir, en.Name())
			if data, err := os.ReadFile(p); err == nil && p != pwFile && bytes.Contains(data, []byte(password)) {
				t.Errorf("the killed backup left the password in %s", p)
			}
			if strings.HasSuffix(en.Name(), ".cnf") {
				t.Errorf("the killed backup left %s", p)
			}
		}
	}
	// A leftover of emrkit 0.6.0, which wrote the password into the backup dir.
	old := filepath.Join(e.backups, "emrkit-client-12345.cnf")
	os.WriteFile(old, []byte("[client]\npassword=\"secret\"\n"), 0o600)

	out, err := exec.Command(bin, "--config", e.config, "backup").CombinedOutput()
	if err != nil {
		t.Fatalf("the next backup: %v: %s", err, out)
	}
	for _, f := range []string{left, old} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", f, err)
		}
		if !strings.Contains(string(out), "removed "+f+", left by a backup that was killed") {
			t.Errorf("the next backup did not say it removed %s: %s", f, out)
		}
	}
	if all, _ := backup.List(e.backups); len(all) != 1 {
		t.Fatalf("backups after the kill and one more: %+v", all)
	}
}

// TestSweepLeavesALiveBackupAlone: a partial file whose writer still runs is not a leftover.
func TestSweepLeavesALiveBackupAlone(t *testing.T) {
	e, _ := bigEnv(t)
	bin := testbin.Emrkit(t, "")
	cmd, out, _ := e.start(t, bin, "backup")
	waitUntil(t, 30*time.Second, "the backup to start writing", func() bool {
		entries, _ := os.ReadDir(e.backups)
		return slices.ContainsFunc(entries, func(en os.DirEntry) bool { return strings.Contains(en.Name(), ".partial-") })
	})
	if removed, err := backup.Sweep(e.backups); err != nil || len(removed) != 0 {
		t.Fatalf("Sweep during a running backup removed %v (%v)", removed, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the backup: %v: %s", err, out)
	}
	if all, _ := backup.List(e.backups); len(all) != 1 {
		t.Fatalf("%+v", all)
	}
}

// TestInterruptedVerifyIsNotDamage: a restore test ended by SIGTERM half-way is recorded as
// interrupted, not as a damaged backup; doctor warns rather than fails; the scratch database
// is dropped.
func TestInterruptedVerifyIsNotDamage(t *testing.T) {
	e, srv := bigEnv(t)
	bin := testbin.Emrkit(t, "")
	out, err := exec.Command(bin, "--config", e.config, "backup").Output()
	if err != nil {
		t.Fatal(err)
	}
	file := strings.TrimSpace(string(out))
	cmd, log, _ := e.start(t, bin, "backup", "verify", file)
	root := srv.DB(t, "")
	waitUntil(t, 30*time.Second, "the restore test to be loading", func() bool {
		var n int
		root.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'demographic'", backup.ScratchDatabase).Scan(&n)
		return n == 1
	})
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(log.String(), "before it could judge the backup; run it again") {
		t.Fatalf("verify ended by SIGTERM: exit %d (%v): %s", code, err, log)
	}
	last, ok, err := backup.LastVerify(filepath.Join(e.dir, "state"))
	if err != nil || !ok || !last.Interrupted || last.OK || strings.Contains(last.Problem, "damaged") {
		t.Fatalf("recorded as %+v %v", last, err)
	}
	if exists, _, _ := backup.Exists(t.Context(), srvConfig(srv), backup.ScratchDatabase); exists {
		t.Fatal("the scratch database was left behind")
	}
	dout, _, code := e.run("doctor")
	if !strings.Contains(dout, "WARN") || !strings.Contains(dout, "was interrupted") {
		t.Fatalf("doctor after an interrupted test (exit %d): %s", code, dout)
	}
	t.Log(strings.TrimSpace(log.String()))
}

// BenchmarkVerifyBomb: `emrkit backup verify` of a 1 MB gzip that expands to 1 GiB of one
// statement is refused at the server's max_allowed_packet, in linear time and bounded memory.
// Metrics: the seconds it took and emrkit's peak RSS. The goal: under 60 s and 300 MB.
func BenchmarkVerifyBomb(b *testing.B) {
	srv := mariadbtest.Start(b)
	cfg := srv.CreateDatabase(b, "oscar_15")
	dir := b.TempDir()
	conf := filepath.Join(dir, "emrkit.yaml")
	os.WriteFile(conf, fmt.Appendf(nil, "database: {socket: %s, name: oscar_15}\npgp: {mode: none}\nfirewall: {enable: false}\n"+
		"paths: {state_dir: %s/state, backup_dir: %s/backups, cron_file: %s/cron}\n", cfg.Socket, dir, dir, dir), 0o600)
	bomb := filepath.Join(dir, "oscar_15-backup-20260101T000000.000Z.sql.gz")
	writeBomb(b, bomb, 1<<30)
	fi, _ := os.Stat(bomb)
	bin := testbin.Emrkit(b, "")
	var secs, rss float64
	for b.Loop() {
		cmd := exec.Command(bin, "--config", conf, "backup", "verify", bomb)
		start := time.Now()
		out, _ := cmd.CombinedOutput()
		secs += time.Since(start).Seconds()
		if cmd.ProcessState.ExitCode() != 3 || !strings.Contains(string(out), "larger than the server's max_allowed_packet") {
			b.Fatalf("exit %d: %s", cmd.ProcessState.ExitCode(), out)
		}
		u := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		rss = max(rss, float64(u.Maxrss)/1024)
		b.Log(strings.TrimSpace(string(out)))
	}
	n := float64(b.N)
	b.ReportMetric(secs/n, "s/verify")
	b.ReportMetric(rss, "emrkit-maxrss-MB")
	b.Logf("bomb: %.1f MB gzip -> 1024 MB of SQL; refused in %.2fs, emrkit's peak RSS %.0f MB (the mariadb client it feeds holds at most max_allowed_packet)",
		float64(fi.Size())/1e6, secs/n, rss)
}

// writeBomb writes a gzip-compressed dump whose one INSERT holds size bytes of a patient's
// name: a few kilobytes of header, then one line that never ends.
func writeBomb(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	fmt.Fprint(zw, "-- MariaDB dump 10.19\n--\n-- Host: localhost    Database: oscar_15\n--\n\n"+
		"--\n-- Dumping data for table `demographic`\n--\n\nINSERT INTO `demographic` VALUES\n(1,'")
	chunk := bytes.Repeat([]byte("Jane Doe "), 1<<16)
	for written := int64(0); written < size; written += int64(len(chunk)) {
		zw.Write(chunk)
	}
	fmt.Fprint(zw, "');\n-- Dump completed\n")
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
}
