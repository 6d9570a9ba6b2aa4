package fsutil

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// plantLink puts a link at dir/name to a secret stand-in and returns both paths.
func plantLink(t *testing.T) (link, target string) {
	t.Helper()
	dir := t.TempDir()
	target = filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, []byte("root:$6$secret:19000::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link = filepath.Join(dir, "oscar.properties")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link, target
}

// untouched fails unless link is still the same link and target still holds its content.
func untouched(t *testing.T, link, target string) {
	t.Helper()
	if got, err := os.Readlink(link); err != nil || got != target {
		t.Fatalf("link changed: %q %v", got, err)
	}
	fi, err := os.Stat(target)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("target mode changed: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(target); !bytes.HasPrefix(data, []byte("root:$6$secret")) {
		t.Fatalf("target content changed: %q", data)
	}
}

func TestSymlinkIsRefusedNotFollowed(t *testing.T) {
	link, target := plantLink(t)
	ops := map[string]func() error{
		"read":  func() error { _, err := ReadFile(link, TextLimit); return err },
		"write": func() error { return WriteAtomic(link, []byte("x=1\n"), 0o640, nil) },
		"chmod": func() error { return SetModeOwner(link, 0o644, &Owner{UID: 0, GID: 0}) },
	}
	for name, op := range ops {
		err := op()
		var le *LinkError
		if !errors.As(err, &le) || !errors.Is(err, ErrLink) {
			t.Fatalf("%s: want LinkError, got %v", name, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, link) || !strings.Contains(msg, target) || strings.Contains(msg, "secret") {
			t.Fatalf("%s: message must name link and target, not content: %s", name, msg)
		}
		untouched(t, link, target)
	}
}

func TestLinkedDirectoryAboveIsFollowed(t *testing.T) {
	// /var/www/html/openemr -> openemr-7.0.3 is the admin's layout, not an attack.
	dir := t.TempDir()
	real := filepath.Join(dir, "openemr-7.0.3")
	os.Mkdir(real, 0o755)
	os.WriteFile(filepath.Join(real, "f"), []byte("a"), 0o644)
	os.Symlink(real, filepath.Join(dir, "openemr"))
	p := filepath.Join(dir, "openemr", "f")
	if err := WriteAtomic(p, []byte("b"), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(p, TextLimit); err != nil || string(got) != "b" {
		t.Fatalf("got %q %v", got, err)
	}
}

func TestFIFOIsRefusedWithoutHanging(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	// No writer ever opens the FIFO: a blocking open would hang here forever.
	_, err := ReadFile(p, TextLimit)
	var nr *NotRegularError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("want NotRegularError naming the FIFO, got %v", err)
	}
	if err := WriteAtomic(p, []byte("x"), 0o600, nil); !errors.As(err, &nr) {
		t.Fatalf("write over a FIFO: want NotRegularError, got %v", err)
	}
	if fi, _ := os.Lstat(p); fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Fatal("the FIFO was replaced")
	}
}

func TestDirectoryIsNotAFile(t *testing.T) {
	_, err := ReadFile(t.TempDir(), TextLimit)
	var nr *NotRegularError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("got %v", err)
	}
}

func TestTooLargeIsRefusedBeforeReading(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	f, _ := os.Create(p)
	f.Truncate(TextLimit + 1) // sparse: costs no disk, would cost 8 MiB of memory to read
	f.Close()
	_, err := ReadFile(p, TextLimit)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Size != TextLimit+1 {
		t.Fatalf("got %v", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "none"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: want ErrNotExist, got %v", err)
	}
}

func TestSetModeOwnerOnDirectoryAndFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, nil, 0o600)
	for _, path := range []string{dir, p} {
		if err := SetModeOwner(path, 0o750, &Owner{UID: 0, GID: 0}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o750 {
			t.Fatalf("%s: mode %v", path, fi.Mode().Perm())
		}
	}
}

func TestReadThroughLinkFollowsToARegularFileOnly(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "site.conf")
	if err := os.WriteFile(target, []byte("SSLEngine on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "enabled.conf")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadThroughLink(link, TextLimit); err != nil || string(data) != "SSLEngine on\n" {
		t.Fatalf("ReadThroughLink(link) = %q, %v", data, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	toFIFO := filepath.Join(dir, "to-fifo.conf")
	if err := os.Symlink(fifo, toFIFO); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadThroughLink(toFIFO, TextLimit); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("a link to a FIFO: %v, want ErrNotRegular", err)
	}
}
