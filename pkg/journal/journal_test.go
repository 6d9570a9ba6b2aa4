package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/redact"
)

func TestPutGetPersistsAtomically(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{ID: "props.key:/x#TOTP", Kind: "props.key", Target: "/x#TOTP", Since: "0.1.0", State: Pending, Before: []byte(`{"present":false}`)}
	if err := j.Put(e); err != nil {
		t.Fatal(err)
	}
	e.State = Done
	if err := j.Put(e); err != nil {
		t.Fatal(err)
	}
	j.Close()

	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var before bytes.Buffer
	json.Compact(&before, got[0].Before)
	if len(got) != 1 || got[0].State != Done || before.String() != `{"present":false}` {
		t.Fatalf("read back %+v", got)
	}
	if got[0].Created.IsZero() || got[0].Updated.Before(got[0].Created) {
		t.Fatalf("timestamps: %+v", got[0])
	}
	fi, err := os.Stat(filepath.Join(dir, fileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestSecondOpenIsBusy(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// flock is per open file description, so a second Open in this process conflicts too.
	_, err = Open(dir)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("want ErrBusy, got %v", err)
	}
	if !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("error should name the holder: %v", err)
	}
}

func TestLockReleasedOnProcessDeath(t *testing.T) {
	dir := t.TempDir()
	// A process holding the lock dies by SIGKILL: the kernel drops the flock.
	// One process (sh exec'd into sleep) holds the fd, so killing it is the holder's death.
	// The holder says when it has the lock, so the test never races it for the lock.
	cmd := exec.Command("sh", "-c", `exec 9>>"$1" && flock 9 && echo locked && exec sleep 30`, "sh", filepath.Join(dir, lockName))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("flock(1) never took the lock: %q %v", line, err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("want ErrBusy while flock(1) holds the lock, got %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	j, err := Open(dir)
	if err != nil {
		t.Fatalf("lock not released after kill: %v", err)
	}
	j.Close()
}

func TestCorruptJournalIsAnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, fileName)
	os.WriteFile(p, []byte("{not json"), 0o600)
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("want corrupt error, got %v", err)
	}
	data, _ := os.ReadFile(p)
	if string(data) != "{not json" {
		t.Fatal("corrupt journal was replaced")
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fileName), []byte(`{"format":99,"entries":[]}`), 0o600)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "newer emrkit") {
		t.Fatalf("got %v", err)
	}
}

func TestUnreadableJournal(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: unreadable as a file, even for root.
	os.Mkdir(filepath.Join(dir, fileName), 0o700)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("got %v", err)
	}
}

func TestDeleteOnlyDeferred(t *testing.T) {
	j, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Put(Entry{ID: "a", Kind: "k", State: Deferred})
	j.Put(Entry{ID: "b", Kind: "k", State: Done})
	if err := j.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := j.Delete("b"); err == nil {
		t.Fatal("deleting a done change must be refused")
	}
	if got := j.Entries(); len(got) != 1 || got[0].ID != "b" {
		t.Fatalf("entries %+v", got)
	}
}

// The file is assembled from entries encoded one at a time; it must be exactly what encoding
// the whole document prints, so older emrkits (and admins) read the same journal.
func TestFileIsTheWholeDocumentIndented(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	check := func() {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dir, fileName))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.MarshalIndent(file{Format: FormatVersion, Entries: j.Entries()}, "", "  ")
		if string(got) != string(want)+"\n" {
			t.Fatalf("file:\n%s\nwant:\n%s", got, want)
		}
	}
	for i, e := range []Entry{
		{ID: "a:1", Kind: "a", State: Pending, Desired: json.RawMessage(`{"x": [1, 2], "y": {"z": "q"}}`), Before: json.RawMessage(`{}`)},
		{ID: "b:2", Kind: "b", State: Done, Note: "quote \" and <tag> & newline\n"},
		{ID: "a:1", Kind: "a", State: Done, Desired: json.RawMessage(`{"x":[1,2]}`)},
		{ID: "c:3", Kind: "c", State: Deferred, Note: "waits"},
	} {
		if err := j.Put(e); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		check()
	}
	if err := j.Delete("c:3"); err != nil {
		t.Fatal(err)
	}
	check()
	j.Close()
	j, err = Open(dir) // encodes what it read
	if err != nil {
		t.Fatal(err)
	}
	j.Put(Entry{ID: "d:4", Kind: "d", State: Done})
	check()
	j.Close()

	dir = t.TempDir() // a journal whose only entry, a deferral, went: no entries at all
	if j, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	j.Put(Entry{ID: "e:5", Kind: "e", State: Deferred})
	j.Delete("e:5")
	check()
}

func TestNoteIsOneBoundedLine(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	long := "kept:\n" + strings.Repeat("row value ", 10000)
	if err := j.Put(Entry{ID: "k:t", Kind: "k", Target: "t", State: Undone, Note: long}); err != nil {
		t.Fatal(err)
	}
	entries, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	note := entries[0].Note
	if len(note) > redact.MaxLen || strings.Contains(note, "\n") || !strings.HasPrefix(note, "kept: row value") {
		t.Fatalf("note not one bounded line (%d bytes): %q", len(note), note[:min(len(note), 80)])
	}
}
