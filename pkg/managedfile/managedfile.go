// Package managedfile owns whole files that emrkit writes (the cron entry, and the like):
// a step that puts exact content at a path with a mode, and an undo that removes the file or
// puts back the one it replaced — only while the file still holds emrkit's content.
package managedfile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// Kind is the journal kind of a managed file.
const Kind = "file"

type desired struct {
	Path   string      `json:"path"`
	SHA256 string      `json:"sha256"` // of the content emrkit wrote
	Mode   fs.FileMode `json:"mode"`
}

type before struct {
	Present bool        `json:"present"`
	Content []byte      `json:"content,omitempty"` // the replaced file, restored verbatim
	Mode    fs.FileMode `json:"mode,omitempty"`
}

// Step makes Path hold exactly Content with Mode (owner root).
type Step struct {
	Path         string
	Content      []byte
	Mode         fs.FileMode
	What         string // e.g. "cron entry cycling OSCAR PINs"
	SinceVersion string
}

func (s Step) Kind() string     { return Kind }
func (s Step) Target() string   { return s.Path }
func (s Step) ID() string       { return Kind + ":" + s.Path }
func (s Step) Since() string    { return s.SinceVersion }
func (s Step) Describe() string { return fmt.Sprintf("install %s (%s)", s.Path, s.What) }

// Preflight defers the step while the file's directory is missing: it belongs to a package
// that is not installed (no /etc/cron.d without cron), and emrkit does not create it.
func (s Step) Preflight(context.Context) error {
	dir := filepath.Dir(s.Path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return &step.DeferredError{Reason: dir + " does not exist (is the package that owns it installed?)"}
	}
	return nil
}

func (s Step) Check(ctx context.Context) (bool, error) {
	if err := s.Preflight(ctx); err != nil {
		return false, err
	}
	cur, fi, err := fsutil.ReadFileStat(s.Path, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, s.Content) && fi.Mode().Perm() == s.Mode, nil
}

func (s Step) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	b := before{}
	cur, fi, err := fsutil.ReadFileStat(s.Path, fsutil.TextLimit)
	switch {
	case err == nil:
		b = before{Present: true, Content: cur, Mode: fi.Mode().Perm()}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, err
	}
	dj, err := json.Marshal(desired{Path: s.Path, SHA256: hash(s.Content), Mode: s.Mode})
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return dj, bj, err
}

func (s Step) Apply(context.Context, json.RawMessage) error {
	return fsutil.WriteAtomic(s.Path, s.Content, s.Mode, &fsutil.Owner{UID: 0, GID: 0})
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Undoer reverses file entries.
type Undoer struct{}

func decode(e journal.Entry) (desired, before, error) {
	return journal.Decode[desired, before](e)
}

func (Undoer) Undo(_ context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := decode(e)
	if err != nil {
		return 0, "", err
	}
	cur, err := fsutil.ReadFile(d.Path, fsutil.TextLimit)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !b.Present {
			return step.AlreadyBefore, "", nil
		}
		return step.Kept, d.Path + " was removed since", nil
	case errors.Is(err, fsutil.ErrNotRegular):
		return step.Kept, d.Path + " was replaced by a link or a special file since emrkit wrote it", nil
	case err != nil:
		return 0, "", fmt.Errorf("read %s: %w", d.Path, err)
	case hash(cur) != d.SHA256:
		if b.Present && bytes.Equal(cur, b.Content) {
			return step.AlreadyBefore, "", nil
		}
		return step.Kept, d.Path + " was edited since emrkit wrote it", nil
	}
	if b.Present {
		if err := fsutil.WriteAtomic(d.Path, b.Content, b.Mode, nil); err != nil {
			return 0, "", err
		}
		return step.Restored, "", nil
	}
	if err := os.Remove(d.Path); err != nil {
		return 0, "", fmt.Errorf("remove %s: %w", d.Path, err)
	}
	return step.Restored, "", nil
}

func (Undoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := decode(e)
	if err != nil {
		return false, err
	}
	cur, err := fsutil.ReadFile(d.Path, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return hash(cur) == d.SHA256, nil
}
