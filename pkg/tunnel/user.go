package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

type userDesired struct {
	User string `json:"user"`
	Home string `json:"home"`
}

type userBefore struct {
	Present bool `json:"present"`
	// HomeExisted: the home directory was there before emrkit added the user, so undo
	// leaves it.
	HomeExisted bool `json:"home_existed"`
}

// UserStep makes Env.SystemUser a system account with its own group, home Env.Home and no
// login shell or password. An account that already exists is used as it is and never
// journaled, so undo never removes it.
type UserStep struct {
	Env          Env
	SinceVersion string
}

func (s UserStep) Kind() string   { return UserKind }
func (s UserStep) Target() string { return s.Env.SystemUser }
func (s UserStep) ID() string     { return UserKind + ":" + s.Env.SystemUser }
func (s UserStep) Since() string  { return s.SinceVersion }
func (s UserStep) Describe() string {
	return fmt.Sprintf("add system user %s for the portal tunnel", s.Env.SystemUser)
}

// Preflight refuses an existing account whose home is not Env.Home: the key would be where
// ssh does not look for it, or in another account's directory.
func (s UserStep) Preflight(context.Context) error {
	a, err := lookupAccount(s.Env.SystemUser)
	if errors.Is(err, errNoAccount) {
		if _, err := os.Stat(adduserPath); err != nil {
			return fmt.Errorf("%s is missing; apt install adduser", adduserPath)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if a.Home != s.Env.Home {
		return fmt.Errorf("user %s already exists with home %s, not %s where emrkit keeps the tunnel's key; change its home (usermod -d %s %s) or remove it",
			a.Name, a.Home, s.Env.Home, s.Env.Home, a.Name)
	}
	return nil
}

func (s UserStep) Check(context.Context) (bool, error) {
	_, err := lookupAccount(s.Env.SystemUser)
	if errors.Is(err, errNoAccount) {
		return false, nil
	}
	return err == nil, err
}

func (s UserStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	_, statErr := os.Lstat(s.Env.Home)
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("tunnel home: %w", statErr)
	}
	d, err := json.Marshal(userDesired{User: s.Env.SystemUser, Home: s.Env.Home})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(userBefore{HomeExisted: statErr == nil})
	return d, b, err
}

func (s UserStep) Apply(ctx context.Context, _ json.RawMessage) error {
	if ok, err := s.Check(ctx); err != nil || ok {
		return err // a run resumed after a crash: adduser already ran
	}
	_, err := run(ctx, nil, adduserPath, "--system", "--group", "--home", s.Env.Home,
		"--shell", nologinPath, "--disabled-password", s.Env.SystemUser)
	return err
}

// UserUndoer removes the account emrkit added, its group, and its home directory when
// emrkit made it and nothing but emrkit's files were ever in it (they are gone by then:
// the key's undo ran first).
type UserUndoer struct{ Env Env }

func (u UserUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[userDesired, userBefore](e)
	if err != nil {
		return 0, "", err
	}
	a, err := lookupAccount(d.User)
	switch {
	case errors.Is(err, errNoAccount):
		detail, err := u.removeHome(d, b)
		return step.AlreadyBefore, detail, err
	case err != nil:
		return 0, "", err
	case a.Home != d.Home:
		return step.Kept, fmt.Sprintf("user %s now has home %s, not %s: left alone", d.User, a.Home, d.Home), nil
	}
	if pids := uidPIDs("/proc", a.UID); len(pids) > 0 {
		return 0, "", fmt.Errorf("user %s still runs processes %v; stop the portal tunnel (systemctl stop %s) and undo again", d.User, pids, UnitName)
	}
	// A purge may run after adduser was removed (it is not Essential): passwd's userdel
	// does the same, and without either the account is left with a message.
	switch {
	case exists(deluserPath):
		if _, err := run(ctx, nil, deluserPath, "--system", d.User); err != nil {
			return 0, "", err
		}
	case exists(userdelPath):
		if _, err := run(ctx, nil, userdelPath, d.User); err != nil {
			return 0, "", err
		}
	default:
		return step.Skipped, fmt.Sprintf("neither %s nor %s is installed: remove user %s and %s yourself", deluserPath, userdelPath, d.User, d.Home), nil
	}
	// deluser and userdel remove the user's own group when nothing else is in it; an emptied
	// group of the same name left behind is the one adduser --group made.
	if g, err := user.LookupGroup(d.User); err == nil && g.Gid == fmt.Sprint(a.GID) && exists(groupdelPath) {
		if out, err := os.ReadFile("/etc/group"); err == nil && groupEmpty(string(out), d.User) {
			if _, err := run(ctx, nil, groupdelPath, d.User); err != nil {
				return 0, "", err
			}
		}
	}
	detail, err := u.removeHome(d, b)
	return step.Restored, detail, err
}

// removeHome removes the home directory emrkit's adduser made, while it is empty.
func (u UserUndoer) removeHome(d userDesired, b userBefore) (string, error) {
	if b.HomeExisted {
		return "", nil
	}
	ents, err := os.ReadDir(d.Home)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("tunnel home: %w", err)
	case len(ents) > 0:
		return fmt.Sprintf("kept %s: it holds files emrkit did not make", d.Home), nil
	}
	if err := os.Remove(d.Home); err != nil {
		return "", fmt.Errorf("remove %s: %w", d.Home, err)
	}
	return "", nil
}

func (u UserUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[userDesired, userBefore](e)
	if err != nil {
		return false, err
	}
	a, err := lookupAccount(d.User)
	if errors.Is(err, errNoAccount) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return a.Home == d.Home, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// groupEmpty reports whether group has no members in /etc/group's content.
func groupEmpty(etcGroup, group string) bool {
	for _, line := range strings.Split(etcGroup, "\n") {
		if f := strings.Split(line, ":"); len(f) == 4 && f[0] == group {
			return f[3] == ""
		}
	}
	return false
}
