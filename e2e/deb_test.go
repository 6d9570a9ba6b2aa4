package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/testbin"
)

// buildDeb runs `make deb` into a fresh directory, as a user would, and returns the package.
func buildDeb(t *testing.T, extra ...string) string {
	t.Helper()
	dist := t.TempDir()
	args := append([]string{"-C", testbin.RepoRoot(t), "deb", "DIST=" + dist}, extra...)
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "emrkit_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	return debs[0]
}

func TestDebIsReproducible(t *testing.T) {
	a, b := buildDeb(t), buildDeb(t)
	da, err := os.ReadFile(a)
	must(t, err)
	db, err := os.ReadFile(b)
	must(t, err)
	if !bytes.Equal(da, db) {
		t.Fatalf("two builds differ: %s (%d bytes) vs %s (%d bytes)", a, len(da), b, len(db))
	}
}

// TestDebLintianClean lints every release this tree builds: older ones are rebuilt for the
// upgrade and downgrade tests, and each ships its own cut of the changelog.
func TestDebLintianClean(t *testing.T) {
	for _, v := range []string{"0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.4.1", ""} {
		args := []string{}
		if v != "" {
			args = append(args, "VERSION="+v)
		}
		deb := buildDeb(t, args...)
		out, err := exec.Command("sh", filepath.Join(testbin.RepoRoot(t), "scripts", "lintian.sh"), deb).CombinedOutput()
		if err != nil {
			t.Fatalf("lintian on %s: %v\n%s", filepath.Base(deb), err, out)
		}
		t.Logf("%s", bytes.TrimSpace(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:]))
	}
}

func TestDebOlderVersionRebuildable(t *testing.T) {
	deb := buildDeb(t, "VERSION=0.1.0")
	out, err := exec.Command("dpkg-deb", "-f", deb, "Version", "Section").CombinedOutput()
	if err != nil || string(out) != "Version: 0.1.0-1\nSection: admin\n" {
		t.Fatalf("control fields: %q %v", out, err)
	}
	// A version with no changelog entry cannot be built: it would ship a wrong history.
	cmd := exec.Command("make", "-C", testbin.RepoRoot(t), "deb", "DIST="+t.TempDir(), "VERSION=0.0.1")
	if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("no entry for 0.0.1")) {
		t.Fatalf("building 0.0.1: %v\n%s", err, out)
	}
}

// TestPiuparts runs piuparts' default install and purge test on the package, with the cached
// Debian 12 image as its base. Inside piuparts' chroot (a real chroot sharing the host's
// network) the firewall step must defer, never touch ufw.
func TestPiuparts(t *testing.T) {
	deb := buildDeb(t)
	script := filepath.Join(testbin.RepoRoot(t), "scripts", "chroot.sh")
	out, err := exec.Command("sh", script, "image", "-").Output()
	if err != nil {
		t.Fatalf("chroot image: %v", err)
	}
	base := strings.TrimSpace(string(out))
	log, err := exec.Command("piuparts", "--basetgz="+base, "--distribution=bookworm",
		"--mirror=http://deb.debian.org/debian main", deb).CombinedOutput()
	if err != nil || !bytes.Contains(log, []byte("PASS: All tests.")) {
		t.Fatalf("piuparts: %v\n%s", err, tail(log, 60))
	}
	if !bytes.Contains(log, []byte("running in a chroot (the root directory is not pid 1")) {
		t.Fatalf("the firewall step did not defer in piuparts' chroot:\n%s", tail(log, 60))
	}
	t.Log("piuparts: PASS: Installation and purging test; PASS: All tests.")
}

func tail(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
