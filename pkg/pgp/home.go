package pgp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// HomeKind is the journal kind of the Tomcat user's GnuPG home.
const HomeKind = "pgp.home"

type homeDesired struct {
	Path string `json:"path"`
	User string `json:"user"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Home string `json:"home"` // the account's home, for HOME when gpg runs as it
}

type homeBefore struct {
	Existed bool `json:"existed"`
}

// HomeStep makes Path a GnuPG home owned by Account, mode 0700, when it is missing. An
// existing home is used as it is (it must belong to Account), and undo never removes it.
type HomeStep struct {
	Path         string
	Account      Account
	SinceVersion string
}

func (s HomeStep) Kind() string   { return HomeKind }
func (s HomeStep) Target() string { return s.Path }
func (s HomeStep) ID() string     { return HomeKind + ":" + s.Path }
func (s HomeStep) Since() string  { return s.SinceVersion }
func (s HomeStep) Describe() string {
	return fmt.Sprintf("GnuPG home %s for %s (0700)", s.Path, s.Account.Name)
}

func ownerOf(fi fs.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }

// Preflight checks that the home can be created, or that an existing one is the account's:
// gpg running as Tomcat cannot use a home it does not own.
func (s HomeStep) Preflight(context.Context) error {
	parent := filepath.Dir(s.Path)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s does not exist, so the GnuPG home %s cannot be created there; create it, or set pgp.gnupghome", parent, s.Path)
	}
	fi, err := os.Stat(s.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("GnuPG home: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory; move it away, or set pgp.gnupghome", s.Path)
	case ownerOf(fi) != s.Account.UID:
		return fmt.Errorf("GnuPG home %s belongs to uid %d, not %s; `chown -R %s: %s`, or set pgp.gnupghome", s.Path, ownerOf(fi), s.Account.Name, s.Account.Name, s.Path)
	}
	return nil
}

func (s HomeStep) Check(context.Context) (bool, error) {
	fi, err := os.Stat(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("GnuPG home: %w", err)
	}
	return fi.IsDir() && ownerOf(fi) == s.Account.UID, nil
}

func (s HomeStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	_, err := os.Stat(s.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("GnuPG home: %w", err)
	}
	existed := err == nil
	d, err := json.Marshal(homeDesired{Path: s.Path, User: s.Account.Name, UID: s.Account.UID, GID: s.Account.GID, Home: s.Account.Home})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(homeBefore{Existed: existed})
	return d, b, err
}

// Apply creates the home under a temporary name, owned and 0700, and renames it into place,
// so a crash never leaves a root-owned home that gpg as Tomcat could not use.
func (s HomeStep) Apply(_ context.Context, raw json.RawMessage) error {
	var d homeDesired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := os.Stat(d.Path); err == nil {
		return nil
	}
	parent := filepath.Dir(d.Path)
	stale, _ := filepath.Glob(filepath.Join(parent, "."+filepath.Base(d.Path)+".emrkit-*"))
	for _, p := range stale {
		os.RemoveAll(p)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(d.Path)+".emrkit-*")
	if err != nil {
		return fmt.Errorf("create GnuPG home: %w", err)
	}
	if err := fsutil.SetModeOwner(tmp, 0o700, &fsutil.Owner{UID: d.UID, GID: d.GID}); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create GnuPG home: %w", err)
	}
	if err := os.Rename(tmp, d.Path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create GnuPG home: %w", err)
	}
	return fsutil.SyncDir(parent)
}

// HomeUndoer removes a GnuPG home emrkit created, once it holds nothing but gpg's own
// bookkeeping and no key.
type HomeUndoer struct {
	GPG, GPGConf string
}

func decodeHome(e journal.Entry) (homeDesired, homeBefore, error) {
	return journal.Decode[homeDesired, homeBefore](e)
}

func (d homeDesired) gpg(path, conf string) GPG {
	return GPG{Path: path, Conf: conf, Home: d.Path, Account: &Account{Name: d.User, UID: d.UID, GID: d.GID, Home: d.Home}}
}

// bookkeeping is what gpg and its agent create in a home by themselves.
func bookkeeping(name string) bool {
	switch name {
	case "pubring.kbx", "pubring.kbx~", "trustdb.gpg", "random_seed", ".gpg-v21-migrated", "tofu.db", "sshcontrol":
		return true
	}
	return strings.HasPrefix(name, "S.") || strings.HasPrefix(name, ".#lk") || strings.HasSuffix(name, ".lock")
}

// gpgDir reports whether name is a directory gpg creates, and what it may hold while it
// holds nothing of anyone's (crls.d keeps dirmngr's index).
func gpgDir(name string) (allowed []string, ok bool) {
	switch name {
	case "private-keys-v1.d", "openpgp-revocs.d":
		return nil, true
	case "crls.d":
		return []string{"DIR.txt"}, true
	}
	return nil, false
}

// foreign lists what in dir emrkit and gpg did not put there.
func foreign(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		allowed, isDir := gpgDir(e.Name())
		switch {
		case isDir && e.IsDir():
			sub, err := os.ReadDir(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			for _, s := range sub {
				if !slices.Contains(allowed, s.Name()) {
					out = append(out, e.Name()+"/"+s.Name())
				}
			}
		case !e.IsDir() && bookkeeping(e.Name()):
		default:
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (u HomeUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := decodeHome(e)
	if err != nil {
		return 0, "", err
	}
	if b.Existed {
		return step.AlreadyBefore, d.Path + " existed before emrkit and stays", nil
	}
	if _, err := os.Stat(d.Path); errors.Is(err, fs.ErrNotExist) {
		return step.AlreadyBefore, "", nil
	}
	g := d.gpg(u.GPG, u.GPGConf)
	g.StopAgent(ctx)
	others, err := foreign(d.Path)
	if err != nil {
		return 0, "", fmt.Errorf("GnuPG home: %w", err)
	}
	if len(others) > 0 {
		return step.Kept, fmt.Sprintf("%s holds files emrkit did not put there (%s); left in place", d.Path, strings.Join(others, ", ")), nil
	}
	if _, err := os.Stat(filepath.Join(d.Path, "pubring.kbx")); err == nil {
		if g.Available() != nil {
			return step.Skipped, "gpg is not installed, so whether " + d.Path + " holds keys cannot be told; left in place", nil
		}
		keys, err := g.Fingerprints(ctx)
		if err != nil {
			return 0, "", err
		}
		if len(keys) > 0 {
			return step.Kept, fmt.Sprintf("%s holds %d key(s) emrkit did not import; left in place", d.Path, len(keys)), nil
		}
	}
	if err := os.RemoveAll(d.Path); err != nil {
		return 0, "", fmt.Errorf("remove GnuPG home: %w", err)
	}
	return step.Restored, "", fsutil.SyncDir(filepath.Dir(d.Path))
}

func (u HomeUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := decodeHome(e)
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fi.IsDir() && ownerOf(fi) == d.UID, nil
}
