package firewall

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// ChrootOverride is the environment variable that lets the firewall steps run in a chroot;
// only tests set it, after giving the chroot a network namespace of its own.
const ChrootOverride = "EMRKIT_CHROOT_FIREWALL"

// ProfileFile is the name of emrkit's ufw application profile.
const ProfileFile = "emrkit"

// Env is the host as the firewall steps see it. DefaultEnv is the real one; tests point the
// paths elsewhere and inject command output for the pure decisions.
type Env struct {
	UFW UFW
	// Exec runs the read-only probes (sshd -T, ss); nil runs processes.
	Exec Exec
	// InChroot says whether emrkit runs in a chroot; nil means not.
	InChroot func(context.Context) (bool, error)
	// Getenv reads EMRKIT_CHROOT_FIREWALL and SSH_CONNECTION; nil reads nothing.
	Getenv func(string) string
	// SSHD and SS are the programs the SSH port is detected with ("" skips one).
	SSHD, SS string
	// ProcRoot is where the process tree is read to find an SSH session the environment
	// lost (sudo); "" skips it.
	ProcRoot string
	// ProfileDir is ufw's application profile directory.
	ProfileDir string
	// DefaultsFile is where ufw keeps its default policies.
	DefaultsFile string
	// UserRules are ufw's rule files, which it rewrites in full on any rule change.
	UserRules []string
	// IPTables list the kernel's filter tables (-S), and UFWModules is ufw's Python code (an
	// upgraded ufw may print differently): both for the fingerprint of KeepReads.
	IPTables   []string
	UFWModules string
}

// DefaultEnv is the real Debian host.
func DefaultEnv() Env {
	return Env{
		UFW:          UFW{Path: "/usr/sbin/ufw", reads: &readCache{}},
		InChroot:     RootDetector("/proc"),
		Getenv:       os.Getenv,
		SSHD:         "/usr/sbin/sshd",
		SS:           "/usr/bin/ss",
		ProcRoot:     "/proc",
		ProfileDir:   "/etc/ufw/applications.d",
		DefaultsFile: "/etc/default/ufw",
		UserRules:    []string{"/etc/ufw/user.rules", "/etc/ufw/user6.rules"},
		IPTables:     []string{"/usr/sbin/iptables", "/usr/sbin/ip6tables"},
		UFWModules:   "/usr/lib/python3/dist-packages/ufw",
	}
}

// ProfilePath is where emrkit's application profile lives.
func (e Env) ProfilePath() string { return filepath.Join(e.ProfileDir, ProfileFile) }

func (e Env) getenv(k string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(k)
}

func (e Env) exec() Exec {
	if e.Exec == nil {
		return RunProcess
	}
	return e.Exec
}

// chrootReason returns why the kernel firewall must not be touched here, or "" when it may.
func (e Env) chrootReason(ctx context.Context) string {
	if e.InChroot == nil || e.getenv(ChrootOverride) == "1" {
		return ""
	}
	in, err := e.InChroot(ctx)
	switch {
	case err != nil:
		return fmt.Sprintf("cannot tell whether this is a chroot (%v), and a chroot shares the host's network: "+
			"the firewall is left alone; set %s=1 only if this system has a network namespace of its own", err, ChrootOverride)
	case in:
		return "running in a chroot (the root directory is not pid 1's), which shares the host's network: the firewall is left alone; " +
			"run `emrkit firewall apply` on the booted system, or set " + ChrootOverride + "=1 only if the chroot has a network namespace of its own"
	}
	return ""
}

// added returns the rules ufw has recorded.
func (e Env) added(ctx context.Context) ([]AddedRule, error) {
	out, err := e.UFW.Run(ctx, "show", "added")
	if err != nil {
		return nil, err
	}
	rules, err := ParseAdded(out)
	if err != nil {
		return nil, fmt.Errorf("ufw show added: %w", err)
	}
	return rules, nil
}

// status returns whether ufw is active.
func (e Env) status(ctx context.Context) (Status, error) {
	out, err := e.UFW.Run(ctx, "status")
	if err != nil {
		return Status{}, err
	}
	st, err := ParseStatus(out)
	if err != nil {
		return st, fmt.Errorf("ufw status: %w", err)
	}
	return st, nil
}

// policies reads the default policies from ufw's defaults file.
func (e Env) policies() (Policies, error) {
	data, err := fsutil.ReadFile(e.DefaultsFile, fsutil.TextLimit)
	if err != nil {
		return Policies{}, fmt.Errorf("read ufw's default policies: %w", err)
	}
	p, err := ParseDefaults(string(data))
	if err != nil {
		return p, fmt.Errorf("%s: %w", e.DefaultsFile, err)
	}
	return p, nil
}

// detectTimeout bounds the probes Steps runs when its caller has no context.
const detectTimeout = 30 * time.Second
