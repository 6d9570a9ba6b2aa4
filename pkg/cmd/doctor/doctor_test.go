package doctor_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/testbin"
)

// asNobody runs the emrkit binary as user nobody and returns its stdout, stderr and exit code.
func asNobody(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// openDir is a temp dir every user can traverse (t.TempDir is root's, 0700).
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "emrkit-doctor-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNonRootCannotReadConfig: doctor run by a user who cannot read the configuration (root's,
// 0600) says so and how to run it, exits 1 and checks nothing, instead of reporting on the
// default paths. A configuration that user can read is checked as far as it can be.
func TestNonRootCannotReadConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it runs doctor as nobody")
	}
	dir := openDir(t)
	bin := filepath.Join(dir, "emrkit")
	data, err := os.ReadFile(testbin.Emrkit(t, "0.6.0-1"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bin, data, 0o755)
	cfg := filepath.Join(dir, "emrkit.yaml")
	yaml := "profile: oscar\ndatabase: {socket: " + filepath.Join(dir, "no.sock") + "}\nfirewall: {enable: false}\n" +
		"paths: {state_dir: " + filepath.Join(dir, "state") + ", backup_dir: " + filepath.Join(dir, "backups") +
		", cron_file: " + filepath.Join(dir, "cron") + "}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	out, errs, code := asNobody(t, bin, "--config", cfg, "doctor")
	want := "emrkit doctor: cannot read " + cfg + " (permission denied; it is root's, mode 0600): run it as root (sudo emrkit doctor --config " + cfg + ")\n"
	if code != 1 || errs != want || out != "" {
		t.Errorf("unreadable config: exit %d\nstdout %q\nstderr %q\nwant exit 1, no report, stderr %q", code, out, errs, want)
	}
	if _, _, code := asNobody(t, bin, "--config", cfg, "doctor", "--json"); code != 1 {
		t.Errorf("--json with an unreadable config: exit %d, want 1", code)
	}

	os.Chmod(cfg, 0o644)
	out, errs, code = asNobody(t, bin, "--config", cfg, "doctor")
	if code != 0 && code != 3 || strings.Contains(errs, "cannot read") || !strings.Contains(out, "SKIP") {
		t.Errorf("readable config: exit %d\n%s%s", code, out, errs)
	}
}
