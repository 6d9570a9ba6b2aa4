package journal

import (
	"errors"
	"slices"
)

// Handle is a journal a command runs over: the locked *Journal, or for a dry run a Snapshot.
type Handle interface {
	Entries() []Entry
	Get(id string) (Entry, bool)
	Put(Entry) error
	Settle(Entry) error
	Flush() error
	Delete(id string) error
	Close() error
}

// ErrSnapshot is what a Snapshot answers to a write.
var ErrSnapshot = errors.New("journal: a dry run does not write the journal")

// Snapshot is the journal as read at one moment, without its lock (as status reads it): a dry
// run sees every entry and writes none, so on a host emrkit has not touched it creates nothing
// (no state dir, no lock file).
type Snapshot []Entry

func (s Snapshot) Entries() []Entry { return slices.Clone(s) }

func (s Snapshot) Get(id string) (Entry, bool) {
	i := slices.IndexFunc(s, func(e Entry) bool { return e.ID == id })
	if i < 0 {
		return Entry{}, false
	}
	return s[i], true
}

func (Snapshot) Put(Entry) error    { return ErrSnapshot }
func (Snapshot) Settle(Entry) error { return ErrSnapshot }
func (Snapshot) Flush() error       { return nil } // nothing was settled, so nothing to write
func (Snapshot) Delete(string) error {
	return ErrSnapshot
}
func (Snapshot) Close() error { return nil }

// OpenRun opens the journal in dir for a run: locked (Open) when it may write, a Snapshot
// when dryRun.
func OpenRun(dir string, dryRun bool) (Handle, error) {
	if !dryRun {
		return Open(dir)
	}
	entries, err := Read(dir)
	return Snapshot(entries), err
}
