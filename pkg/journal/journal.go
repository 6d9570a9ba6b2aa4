// Package journal owns emrkit's crash-safe record of the changes it made to the host.
//
// Every change is an Entry carrying what emrkit wrote (Desired) and what was there before
// (Before), so any emrkit version can undo it from the journal alone, without the plan that
// made it. The file is rewritten atomically on every update and guarded by an exclusive
// lock, so cron, postinst and an admin at the shell never interleave.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/redact"
)

// FormatVersion is the on-disk format this emrkit writes. Readers refuse newer formats
// rather than misread them.
const FormatVersion = 1

const (
	fileName = "journal.json"
	lockName = "journal.lock"
)

// State is where an entry is in its life.
type State string

const (
	// Pending: intent recorded with its before-state; the change may or may not be on the host.
	Pending State = "pending"
	// Done: the change is on the host.
	Done State = "done"
	// Undone: the change was reverted (or found replaced by someone else and left alone).
	Undone State = "undone"
	// Deferred: the step could not run yet (the EMR is not on this host); nothing changed.
	Deferred State = "deferred"
)

// OriginCommand marks entries made by a direct command (e.g. `2fa enroll`) rather than the
// plan; apply does not revert them for being absent from the plan.
const OriginCommand = "command"

// Entry is one change emrkit made, or meant to make.
type Entry struct {
	ID      string          `json:"id"`     // Kind + ":" + Target, unique in the journal
	Kind    string          `json:"kind"`   // selects the undo handler, e.g. "props.key"
	Target  string          `json:"target"` // what is changed, e.g. "/usr/share/tomcat9/oscar.properties#TOTP"
	Since   string          `json:"since"`  // package version that introduced the step
	State   State           `json:"state"`
	Desired json.RawMessage `json:"desired,omitempty"` // what emrkit writes; undo compares against it
	Before  json.RawMessage `json:"before,omitempty"`  // what was there before; undo restores it
	Note    string          `json:"note,omitempty"`    // why deferred, or what undo kept
	Origin  string          `json:"origin,omitempty"`  // "" = the plan, OriginCommand = a direct command
	Created time.Time       `json:"created"`
	Updated time.Time       `json:"updated"`
}

type file struct {
	Format  int     `json:"format"`
	Entries []Entry `json:"entries"`
}

// Journal is an open, locked journal. Close releases the lock.
type Journal struct {
	path    string
	lock    *os.File
	unsaved bool // Settle recorded something the file does not hold yet
	entries []Entry
	// encoded holds each entry's JSON as the file has it: a Put re-encodes one entry, not
	// the whole journal (200 enrolled users are 200 entries, each put twice in one run).
	encoded [][]byte
	now     func() time.Time
}

// ErrBusy is returned by Open when another emrkit process holds the lock.
var ErrBusy = errors.New("another emrkit is running")

// Open locks and reads the journal in dir, creating dir (0700) when missing.
// It never waits: a busy lock is an error naming the holder.
func Open(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: create state dir: %w", err)
	}
	lock, err := fsutil.TryLock(filepath.Join(dir, lockName))
	var held *fsutil.LockedError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("%w (%s); wait for it to finish, then retry", ErrBusy, held.Holder)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	entries, err := read(filepath.Join(dir, fileName))
	if err == nil {
		var encoded [][]byte
		if encoded, err = encodeEach(entries); err == nil {
			return &Journal{path: filepath.Join(dir, fileName), lock: lock, entries: entries, encoded: encoded, now: time.Now}, nil
		}
	}
	lock.Close()
	return nil, err
}

// Read returns the entries in dir without locking, for read-only views such as status.
// Writers replace the file atomically, so a reader sees a whole version.
func Read(dir string) ([]Entry, error) {
	return read(filepath.Join(dir, fileName))
}

// ReadFile returns the entries of the journal file at path (another host's, say) without
// locking it.
func ReadFile(path string) ([]Entry, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return read(path)
}

// maxSize bounds the journal read: it holds the before-images of the files emrkit edited, a
// few KiB each, so 64 MiB is far beyond any real journal and still cheap to hold.
const maxSize = 64 << 20

func read(path string) ([]Entry, error) {
	data, err := fsutil.ReadFile(path, maxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s is unreadable (%v); fix its permissions (emrkit will not start a new one over it)", path, err)
	}
	var doc file
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("journal %s is corrupt (%v); move it aside only once you know what it recorded (emrkit will not replace it)", path, err)
	}
	if doc.Format < 1 || doc.Format > FormatVersion {
		return nil, fmt.Errorf("journal %s has format %d, this emrkit reads up to %d; use a newer emrkit", path, doc.Format, FormatVersion)
	}
	return doc.Entries, nil
}

// Close releases the lock.
func (j *Journal) Close() error {
	return j.lock.Close()
}

// Entries returns a copy of all entries in the order they were first recorded.
func (j *Journal) Entries() []Entry {
	return slices.Clone(j.entries)
}

// Get returns the entry with id.
func (j *Journal) Get(id string) (Entry, bool) {
	i := j.index(id)
	if i < 0 {
		return Entry{}, false
	}
	return j.entries[i], true
}

func (j *Journal) index(id string) int {
	return slices.IndexFunc(j.entries, func(e Entry) bool { return e.ID == id })
}

// Put records e (inserting it or replacing the entry with the same ID) and makes it durable,
// together with anything Settle recorded, before returning.
func (j *Journal) Put(e Entry) error {
	next, encoded, err := j.with(e)
	if err != nil {
		return err
	}
	return j.save(next, encoded)
}

// Settle records e like Put but leaves writing it to the next Put or Flush: for records a
// crash may lose without harm. A change marked done whose record is lost is still pending in
// the file, and the next run, finding it on the host, finishes it (and an undo treats pending
// like done). A run of 200 enrolments so writes the journal 200 times instead of 400.
func (j *Journal) Settle(e Entry) error {
	next, encoded, err := j.with(e)
	if err != nil {
		return err
	}
	j.entries, j.encoded, j.unsaved = next, encoded, true
	return nil
}

// Flush writes what Settle recorded, if anything.
func (j *Journal) Flush() error {
	if !j.unsaved {
		return nil
	}
	return j.save(j.entries, j.encoded)
}

// with returns the entries and their encodings with e put in.
func (j *Journal) with(e Entry) ([]Entry, [][]byte, error) {
	if e.ID == "" || e.Kind == "" || e.State == "" {
		return nil, nil, fmt.Errorf("journal: entry needs id, kind and state: %+v", e)
	}
	// A note is shown by status and revert; it is often an error's text, so it is held to one
	// bounded line like every other message emrkit prints.
	e.Note = redact.Line(e.Note)
	now := j.now().UTC()
	e.Updated = now
	i := j.index(e.ID)
	e.Created = now
	if i >= 0 {
		e.Created = j.entries[i].Created
	}
	raw, err := encodeEntry(e)
	if err != nil {
		return nil, nil, err
	}
	next, encoded := slices.Clone(j.entries), slices.Clone(j.encoded)
	if i >= 0 {
		next[i], encoded[i] = e, raw
	} else {
		next, encoded = append(next, e), append(encoded, raw)
	}
	return next, encoded, nil
}

func (j *Journal) save(next []Entry, encoded [][]byte) error {
	if err := fsutil.WriteAtomic(j.path, document(encoded), 0o600, nil); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.entries, j.encoded, j.unsaved = next, encoded, false
	return nil
}

// encodeEntry is e as it stands in the file's list of entries, indented two levels deep.
func encodeEntry(e Entry) ([]byte, error) {
	raw, err := json.MarshalIndent(e, "    ", "  ")
	if err != nil {
		return nil, fmt.Errorf("journal: encode %s: %w", e.ID, err)
	}
	return raw, nil
}

func encodeEach(entries []Entry) ([][]byte, error) {
	out := make([][]byte, len(entries))
	for i, e := range entries {
		raw, err := encodeEntry(e)
		if err != nil {
			return nil, err
		}
		out[i] = raw
	}
	return out, nil
}

// document assembles the file from its encoded entries: what json.MarshalIndent(file, "",
// "  ") prints, without encoding every entry again.
func document(encoded [][]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"format\": %d,\n  \"entries\": [", FormatVersion)
	for i, raw := range encoded {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		b.Write(raw)
	}
	if len(encoded) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
	return b.Bytes()
}

// Delete removes the entry with id, for records that stand for no change (a deferral that
// no longer applies). Changes are never deleted: they become Undone.
func (j *Journal) Delete(id string) error {
	i := j.index(id)
	if i < 0 {
		return nil
	}
	if s := j.entries[i].State; s != Deferred {
		return fmt.Errorf("journal: refusing to delete %s entry %s; undo it instead", s, id)
	}
	return j.save(slices.Delete(slices.Clone(j.entries), i, i+1), slices.Delete(slices.Clone(j.encoded), i, i+1))
}

// Decode unmarshals e's desired and before states, for undoers of every kind.
func Decode[D, B any](e Entry) (D, B, error) {
	var d D
	var b B
	if err := json.Unmarshal(e.Desired, &d); err != nil {
		return d, b, fmt.Errorf("journal entry %s: desired state: %w", e.ID, err)
	}
	if err := json.Unmarshal(e.Before, &b); err != nil {
		return d, b, fmt.Errorf("journal entry %s: before state: %w", e.ID, err)
	}
	return d, b, nil
}
