package secretfile

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		pw, err := New(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != passwordLength || strings.Trim(pw, base62) != "" || seen[pw] {
			t.Fatalf("password %q: wrong length, alphabet, or repeated", pw)
		}
		seen[pw] = true
	}
}

// TestEnsureWritesOnceAndRefusesReadable: the first Ensure writes a 0600 file, the next
// returns the same password; a file others may read is refused with the fix.
func TestEnsureWritesOnceAndRefusesReadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	a, err := Ensure(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if b, err := Ensure(p); err != nil || b != a {
		t.Fatalf("second Ensure: %q, %v; want %q", b, err, a)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable file: %v", err)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("Remove of a file already gone: %v", err)
	}
	if _, err := Ensure("relative"); err == nil {
		t.Fatal("relative path accepted")
	}
}
