// Package fileperm owns one kind of change: the mode and owner of an existing file (journal
// kind "file.perm"), e.g. OpenEMR's setup scripts locked to 0600 root:root instead of being
// deleted, so the change can be undone and `php sql_upgrade.php` still runs from a root shell.
//
// The file is opened with O_NOFOLLOW and changed through that descriptor (fchown, fchmod):
// a symlink swapped in by whoever can write the directory (the web server, on installs whose
// tree it owns) never turns a chmod into one of another file. Undo is compare-and-swap: the
// old mode and owner come back only while the file still has what emrkit set.
package fileperm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/emrkit/emrkit/pkg/fsutil"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// Kind is the journal kind of a file's mode and owner.
const Kind = "file.perm"

// Perm is a file's permission bits and owner.
type Perm struct {
	Mode fs.FileMode `json:"mode"`
	UID  int         `json:"uid"`
	GID  int         `json:"gid"`
}

func (p Perm) String() string { return fmt.Sprintf("%04o %d:%d", uint32(p.Mode.Perm()), p.UID, p.GID) }

type desired struct {
	Path string `json:"path"`
	Perm
}

// Step gives the regular file at Path the mode and owner Want.
type Step struct {
	Path         string
	Want         Perm
	What         string // why, for humans: "OpenEMR setup script, unreachable from the web"
	SinceVersion string
}

func (s Step) Kind() string   { return Kind }
func (s Step) Target() string { return s.Path }
func (s Step) ID() string     { return Kind + ":" + s.Path }
func (s Step) Since() string  { return s.SinceVersion }
func (s Step) Describe() string {
	return fmt.Sprintf("%s %s (%s)", s.Path, s.Want, s.What)
}

// open returns the regular file at path, opened without following a final symlink, with what
// it holds now.
func open(path string) (*os.File, Perm, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, Perm{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Perm{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return f, Perm{Mode: fi.Mode().Perm(), UID: int(st.Uid), GID: int(st.Gid)}, nil
}

// Read returns the mode and owner of the regular file at path.
func Read(path string) (Perm, error) {
	f, p, err := open(path)
	if err != nil {
		return p, err
	}
	f.Close()
	return p, nil
}

// set gives the open file p: owner first, so the file is never left with the new mode for
// the old owner (a 0640 meant for root:www-data must not be 0640 for another group).
func set(f *os.File, p Perm) error {
	if err := f.Chown(p.UID, p.GID); err != nil {
		return err
	}
	return f.Chmod(p.Mode.Perm())
}

func (s Step) Check(context.Context) (bool, error) {
	cur, err := Read(s.Path)
	if err != nil {
		return false, err
	}
	return cur == s.Want, nil
}

func (s Step) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	cur, err := Read(s.Path)
	if err != nil {
		return nil, nil, err
	}
	d, err := json.Marshal(desired{Path: s.Path, Perm: s.Want})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(cur)
	return d, b, err
}

func (s Step) Apply(_ context.Context, raw json.RawMessage) error {
	var d desired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("%s: desired state: %w", s.Path, err)
	}
	f, _, err := open(d.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := set(f, d.Perm); err != nil {
		return fmt.Errorf("set %s to %s: %w", d.Path, d.Perm, err)
	}
	return nil
}

// Undoer puts a file's mode and owner back while it still has what emrkit set.
type Undoer struct{}

func (Undoer) Undo(_ context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[desired, Perm](e)
	if err != nil {
		return 0, "", err
	}
	f, cur, err := open(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return step.Skipped, d.Path + " is gone", nil
	}
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	switch cur {
	case b:
		return step.AlreadyBefore, "", nil
	case d.Perm:
		if err := set(f, b); err != nil {
			return 0, "", fmt.Errorf("put back %s on %s: %w", b, d.Path, err)
		}
		return step.Restored, "", nil
	}
	return step.Kept, fmt.Sprintf("%s is %s now, not %s as emrkit left it", d.Path, cur, d.Perm), nil
}

func (Undoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[desired, Perm](e)
	if err != nil {
		return false, err
	}
	cur, err := Read(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return cur == d.Perm, err
}
