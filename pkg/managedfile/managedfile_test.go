package managedfile

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

func entry(t *testing.T, s Step) journal.Entry {
	t.Helper()
	d, b, err := s.Capture(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return journal.Entry{ID: s.ID(), Kind: Kind, Desired: d, Before: b}
}

func TestNewFileRemovedOnUndo(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "emrkit")
	s := Step{Path: p, Content: []byte("* * * * * root true\n"), Mode: 0o644}
	e := entry(t, s)
	if ok, _ := s.Check(ctx); !ok {
		t.Fatal("check after apply")
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if ok, _ := (Undoer{}).Holds(ctx, e); !ok {
		t.Fatal("holds")
	}
	o, _, err := Undoer{}.Undo(ctx, e)
	if err != nil || o != step.Restored {
		t.Fatal(o, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("file left behind")
	}
}

func TestReplacedFileRestoredAndEditedKept(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("admin's\n"), 0o600)
	s := Step{Path: p, Content: []byte("emrkit's\n"), Mode: 0o644}
	e := entry(t, s)
	if o, _, _ := (Undoer{}).Undo(ctx, e); o != step.Restored {
		t.Fatal(o)
	}
	got, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(got) != "admin's\n" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored %q %v", got, fi.Mode())
	}
	e = entry(t, s)
	os.WriteFile(p, []byte("edited\n"), 0o644)
	if o, _, _ := (Undoer{}).Undo(ctx, e); o != step.Kept {
		t.Fatal("edited file must be kept, got", o)
	}
	if got, _ := os.ReadFile(p); string(got) != "edited\n" {
		t.Fatal("edited file overwritten")
	}
}
