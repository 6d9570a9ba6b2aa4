package pgp

import (
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/emrkit/emrkit/pkg/step"
)

// Account is the Unix account OSCAR runs as: Tomcat's user.
type Account struct {
	Name     string
	UID, GID int
	// Groups are the supplementary groups, so a process started as the account has the
	// access Tomcat's own processes have.
	Groups []uint32
	Home   string
}

// DefaultTomcatUsers are probed, in order, when oscar.tomcat_user is empty: Debian's
// tomcat9 (and tomcat10) run as tomcat; older packages used tomcat8 and tomcat7.
func DefaultTomcatUsers() []string { return []string{"tomcat", "tomcat9", "tomcat8", "tomcat7"} }

// LookupAccount reads name's account from the user database.
func LookupAccount(name string) (Account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Account{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return Account{}, fmt.Errorf("user %s: non-numeric uid/gid: %w", name, err)
	}
	a := Account{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
	ids, err := u.GroupIds()
	if err != nil {
		return Account{}, fmt.Errorf("groups of user %s: %w", name, err)
	}
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			a.Groups = append(a.Groups, uint32(g))
		}
	}
	return a, nil
}

// credential makes a process run as the account.
func (a Account) credential() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID), Groups: a.Groups}}
}

// resolveTomcat finds the account OSCAR runs as. An account named explicitly (override, then
// oscar.tomcat_user) must exist; otherwise the first existing default is used, and none
// existing defers the step: Tomcat is not installed yet.
func resolveTomcat(configured, override string, candidates []string) (Account, error) {
	name, key := configured, "oscar.tomcat_user"
	if override != "" {
		name = override
	}
	if name != "" {
		a, err := LookupAccount(name)
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return Account{}, fmt.Errorf("%s: user %q does not exist; install Tomcat first or set %s to the user Tomcat runs as", key, name, key)
		}
		return a, err
	}
	if candidates == nil {
		candidates = DefaultTomcatUsers()
	}
	for _, c := range candidates {
		if a, err := LookupAccount(c); err == nil {
			return a, nil
		}
	}
	return Account{}, &step.DeferredError{Reason: fmt.Sprintf(
		"OSCAR/Tomcat is not installed yet (no %s user); run `emrkit apply` after installing it, or set oscar.tomcat_user",
		strings.Join(candidates, ", "))}
}

// gnupgHome is pgp.gnupghome, or .gnupg in the account's home.
func gnupgHome(configured string, a Account) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if !filepath.IsAbs(a.Home) || a.Home == "/" {
		return "", fmt.Errorf("user %s has home %q, where no GnuPG home can go; set pgp.gnupghome", a.Name, a.Home)
	}
	return filepath.Join(a.Home, ".gnupg"), nil
}
