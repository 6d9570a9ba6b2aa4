// Package testbin builds the emrkit binary for tests that run it as a process, the way
// dpkg, cron and admins do.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot is the module's root directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Emrkit builds cmd/emrkit as package version (e.g. "0.1.0-1"; "" builds it as `go build`
// does, without a version stamp) with the given build tags (e.g. "faultinject") and returns
// the binary's path.
func Emrkit(t testing.TB, version string, tags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "emrkit")
	args := []string{"build", "-trimpath", "-o", out}
	if version != "" {
		args = append(args, "-ldflags", "-X main.version="+version)
	}
	for _, tag := range tags {
		args = append(args, "-tags", tag)
	}
	cmd := exec.Command("go", append(args, "./cmd/emrkit")...)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build emrkit: %v\n%s", err, b)
	}
	return out
}
