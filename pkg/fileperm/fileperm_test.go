package fileperm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

func run(t *testing.T, dir string, steps ...step.Step) (*step.Runner, *journal.Journal) {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var out strings.Builder
	return &step.Runner{Journal: j, Undoers: step.Registry{Kind: Undoer{}}, Out: &out}, j
}

func TestLockAndUndo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "setup.php")
	os.WriteFile(path, []byte("<?php\n"), 0o644)
	os.Chown(path, 33, 33)
	s := Step{Path: path, Want: Perm{Mode: 0o600}, What: "setup script", SinceVersion: "0.5.0"}
	r, _ := run(t, dir)
	all := func(journal.Entry) bool { return true }

	rep, err := r.Apply(ctx, []step.Step{s})
	if err != nil || rep.Applied != 1 {
		t.Fatalf("apply: %+v %v", rep, err)
	}
	if p, _ := Read(path); p != (Perm{Mode: 0o600}) {
		t.Fatalf("after apply: %s", p)
	}
	if rep, err := r.Apply(ctx, []step.Step{s}); err != nil || rep.Changed() {
		t.Fatalf("re-apply: %+v %v", rep, err)
	}
	if rep, err := r.Revert(ctx, all); err != nil || rep.Undone != 1 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if p, _ := Read(path); p != (Perm{Mode: 0o644, UID: 33, GID: 33}) {
		t.Fatalf("after undo: %s", p)
	}

	// Changed since (an admin's chmod): kept and reported.
	r.Apply(ctx, []step.Step{s})
	os.Chmod(path, 0o640)
	if rep, err := r.Revert(ctx, all); err != nil || rep.Kept != 1 {
		t.Fatalf("revert after a change: %+v %v", rep, err)
	}
	if p, _ := Read(path); p.Mode != 0o640 || p.UID != 0 {
		t.Fatalf("the admin's mode was not kept: %s", p)
	}
}

func TestSymlinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	os.WriteFile(target, []byte("secret"), 0o640)
	link := filepath.Join(dir, "setup.php")
	os.Symlink(target, link)
	s := Step{Path: link, Want: Perm{Mode: 0o600}}
	r, _ := run(t, dir)
	_, err := r.Apply(context.Background(), []step.Step{s})
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("apply through a symlink: %v", err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Fatal("the link's target was changed")
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}
