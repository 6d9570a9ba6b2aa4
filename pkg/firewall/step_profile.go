package firewall

import (
	"context"
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

type profileDesired struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Content string `json:"content"`
}

type profileBefore struct {
	Present bool        `json:"present"`
	Content string      `json:"content,omitempty"`
	Mode    fs.FileMode `json:"mode,omitempty"`
}

// profileStep writes the ufw application profile (journal kind firewall.profile). It is a
// plain file: the firewall does not change until a rule names the profile.
type profileStep struct {
	env     Env
	name    string
	content []byte
	since   string
}

func (s profileStep) Kind() string   { return KindProfile }
func (s profileStep) Target() string { return s.env.ProfilePath() }
func (s profileStep) ID() string     { return KindProfile + ":" + s.Target() }
func (s profileStep) Since() string  { return s.since }
func (s profileStep) Describe() string {
	return fmt.Sprintf("ufw application profile %s in %s", s.name, s.Target())
}

func readProfile(path string) (profileBefore, error) {
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return profileBefore{}, nil
	}
	if err != nil {
		return profileBefore{}, fmt.Errorf("ufw application profile: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return profileBefore{}, fmt.Errorf("ufw application profile: %w", err)
	}
	return profileBefore{Present: true, Content: string(data), Mode: st.Mode().Perm()}, nil
}

func (s profileStep) Check(context.Context) (bool, error) {
	cur, err := readProfile(s.Target())
	if err != nil {
		return false, err
	}
	return cur.Present && cur.Content == string(s.content), nil
}

func (s profileStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	cur, err := readProfile(s.Target())
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(profileDesired{Path: s.Target(), Name: s.name, Content: string(s.content)}, cur)
}

func (s profileStep) Apply(_ context.Context, desired json.RawMessage) error {
	var d profileDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return fmt.Errorf("ufw application profile: desired state: %w", err)
	}
	if d.Path != s.Target() {
		return fmt.Errorf("ufw application profile: journal names %s, expected %s", d.Path, s.Target())
	}
	if _, err := os.Stat(filepath.Dir(d.Path)); err != nil {
		return fmt.Errorf("ufw application profile: %w (is ufw installed? apt install ufw)", err)
	}
	return fsutil.WriteAtomic(d.Path, []byte(d.Content), 0o644, nil)
}

// profileUndoer puts back what was there (nothing, usually) while the file still holds
// exactly what emrkit wrote. It touches a file only, so it runs in a chroot too.
type profileUndoer struct{ env Env }

func decodeProfile(e journal.Entry) (profileDesired, profileBefore, error) {
	var d profileDesired
	var b profileBefore
	if err := decodeJSON(e.ID, "desired", e.Desired, &d); err != nil {
		return d, b, err
	}
	if err := decodeJSON(e.ID, "before", e.Before, &b); err != nil {
		return d, b, err
	}
	if !filepath.IsAbs(d.Path) || filepath.Base(d.Path) != ProfileFile {
		return d, b, fmt.Errorf("journal entry %s: %q is not an emrkit ufw profile path", e.ID, d.Path)
	}
	return d, b, nil
}

func (u profileUndoer) Undo(_ context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := decodeProfile(e)
	if err != nil {
		return 0, "", err
	}
	cur, err := readProfile(d.Path)
	if err != nil {
		return 0, "", err
	}
	switch {
	case cur.Present && cur.Content == d.Content:
	case !cur.Present && !b.Present, cur.Present && b.Present && cur.Content == b.Content:
		return step.AlreadyBefore, "", nil
	case !cur.Present:
		return step.Kept, d.Path + " was removed since", nil
	default:
		return step.Kept, d.Path + " was edited since emrkit wrote it", nil
	}
	if b.Present {
		mode := b.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := fsutil.WriteAtomic(d.Path, []byte(b.Content), mode, nil); err != nil {
			return 0, "", err
		}
		return step.Restored, "", nil
	}
	if err := os.Remove(d.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, "", fmt.Errorf("remove %s: %w", d.Path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(d.Path)); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

func (u profileUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := decodeProfile(e)
	if err != nil {
		return false, err
	}
	cur, err := readProfile(d.Path)
	if err != nil {
		return false, err
	}
	return cur.Present && cur.Content == d.Content, nil
}
