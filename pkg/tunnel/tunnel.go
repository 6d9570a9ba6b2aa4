// Package tunnel owns the clinic side of the reverse SSH tunnel an offsite patient portal
// reaches the clinic through (since 0.6.0): a system user that runs ssh and never logs in
// (journal kind "tunnel.user"), its passphrase-less ed25519 key ("tunnel.key"), one ssh_config
// file that is the client's whole configuration and the portal host's pinned key (both kind
// "file", pkg/managedfile), the systemd unit that runs `ssh -N` and restarts it for ever,
// its enablement ("tunnel.enable") and its start ("tunnel.start"). It also says what the
// portal host must be given, since emrkit never changes another machine: the
// authorized_keys line that restricts the key to the tunnel's own ports (AuthorizedKeyLine)
// and the sshd Match block (SSHDMatchBlock).
//
// Why it is shaped this way (facts: fleet-tunnel-facts.md section B):
//   - Plain ssh under systemd (Restart=always, RestartSec=10, StartLimitIntervalSec=0), no
//     autossh: its monitor port is an extra -R that permitlisten refuses.
//   - ssh takes the first value it obtains for each option, so everything is in one -F file
//     and nothing is repeated with -o. Remote forwards always name their listen host
//     ("localhost", which is what permitlisten="localhost:P" matches; 127.0.0.1 is not) and
//     their destination (a bare port is a SOCKS proxy into the clinic's LAN).
//   - The portal host's key is pinned (StrictHostKeyChecking yes, its own known_hosts file,
//     no global file): a tunnel never trusts a key it was not given.
//   - Without systemd (a chroot, an image build, piuparts) the unit is installed and enabled
//     and its start is deferred: the tunnel starts when the system boots.
//   - Undo is compare-and-swap like everywhere else: the key is removed only while it is the
//     one emrkit made (a random nonce in its comment), the user only if emrkit added it.
package tunnel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/step"
)

// Since is the release that introduced the tunnel steps.
const Since = "0.6.0"

// Journal kinds of the tunnel's own steps (its files are managedfile.Kind).
const (
	UserKind   = "tunnel.user"
	KeyKind    = "tunnel.key"
	EnableKind = "tunnel.enable"
	StartKind  = "tunnel.start"
)

// Fixed names.
const (
	// UnitName is the systemd unit that runs the tunnel.
	UnitName = "emrkit-portal-tunnel.service"
	// SSHConfigFile and KnownHostsFile are the client's configuration and the portal host's
	// pinned key, in Env.ConfigDir.
	SSHConfigFile  = "portal-tunnel.ssh_config"
	KnownHostsFile = "portal-tunnel.known_hosts"
	// KeyFile is the tunnel's private key in Env.Home (KeyFile+".pub" the public one).
	KeyFile = "id_ed25519"
	// HostAlias is the Host entry of the ssh_config file, the name ssh is given.
	HostAlias = "portal"
	// RestartSec is how long systemd waits before it runs ssh again after it exited.
	RestartSec = 10
	// wantedBy is the target the unit is enabled for.
	wantedBy = "multi-user.target"
)

// Programs the steps run (absolute paths, no shell).
const (
	sshPath       = "/usr/bin/ssh"
	sshKeygenPath = "/usr/bin/ssh-keygen"
	adduserPath   = "/usr/sbin/adduser"
	deluserPath   = "/usr/sbin/deluser"
	userdelPath   = "/usr/sbin/userdel"
	groupdelPath  = "/usr/sbin/groupdel"
	nologinPath   = "/usr/sbin/nologin"
)

// Env is the host as the tunnel steps see it; tests point it elsewhere.
type Env struct {
	// SystemUser runs ssh; it never logs in anywhere (emrkit-tunnel).
	SystemUser string
	// Home is SystemUser's home and holds the key, owned by SystemUser, 0600
	// (/var/lib/emrkit-tunnel).
	Home string
	// ConfigDir holds SSHConfigFile and KnownHostsFile, root 0644 (/etc/emrkit).
	ConfigDir string
	// UnitDir is where the unit file and its enablement live (/etc/systemd/system).
	UnitDir string
	// SystemdRunning reports whether systemd is the running init (default: /run/systemd/system
	// exists, as sd_booted(3) checks).
	SystemdRunning func() bool
	// Systemctl is the systemctl program ("" = /usr/bin/systemctl).
	Systemctl string
}

// DefaultEnv is a Debian host.
func DefaultEnv() Env {
	return Env{
		SystemUser: "emrkit-tunnel",
		Home:       "/var/lib/emrkit-tunnel",
		ConfigDir:  "/etc/emrkit",
		UnitDir:    "/etc/systemd/system",
		SystemdRunning: func() bool {
			fi, err := os.Stat("/run/systemd/system")
			return err == nil && fi.IsDir()
		},
		Systemctl: "/usr/bin/systemctl",
	}
}

// KeyPath is the tunnel's private key.
func (e Env) KeyPath() string { return filepath.Join(e.Home, KeyFile) }

// SSHConfigPath is the client's configuration file.
func (e Env) SSHConfigPath() string { return filepath.Join(e.ConfigDir, SSHConfigFile) }

// KnownHostsPath is the portal host's pinned key.
func (e Env) KnownHostsPath() string { return filepath.Join(e.ConfigDir, KnownHostsFile) }

// UnitPath is the unit file.
func (e Env) UnitPath() string { return filepath.Join(e.UnitDir, UnitName) }

// WantsLink is the symlink that enables the unit (what `systemctl enable` makes).
func (e Env) WantsLink() string { return filepath.Join(e.UnitDir, wantedBy+".wants", UnitName) }

func (e Env) systemdRunning() bool { return e.SystemdRunning != nil && e.SystemdRunning() }

func (e Env) systemctl() string {
	if e.Systemctl == "" {
		return "/usr/bin/systemctl"
	}
	return e.Systemctl
}

var (
	// A system account name adduser accepts without --force-badname.
	systemUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// A path that goes into ssh_config and a unit file unquoted: no blanks, quotes, %
	// (systemd specifiers, ssh tokens) or backslashes.
	plainPathRE = regexp.MustCompile(`^/[A-Za-z0-9._/+@=:,-]*$`)
	// A host name or address (IPv6 without brackets) and the portal account's name.
	hostRE       = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.\-:]{0,252}[A-Za-z0-9])?$`)
	portalUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_\-]{0,31}$`)
)

func (e Env) validate() error {
	if !systemUserRE.MatchString(e.SystemUser) {
		return fmt.Errorf("tunnel system user %q is not a system account name", e.SystemUser)
	}
	for _, p := range []struct{ what, path string }{{"home", e.Home}, {"configuration directory", e.ConfigDir}, {"unit directory", e.UnitDir}} {
		if !plainPathRE.MatchString(p.path) || filepath.Clean(p.path) != p.path {
			return fmt.Errorf("tunnel %s %q must be a clean absolute path without blanks, quotes or %%", p.what, p.path)
		}
	}
	return nil
}

// Forward is one port the portal host listens on (localhost:RemotePort there) and where the
// clinic side connects each connection it forwards (localhost:LocalPort here).
type Forward struct {
	RemotePort int `json:"remote_port"`
	LocalPort  int `json:"local_port"`
	// Setting is the configuration key that sets RemotePort, for messages
	// ("" = portal.tunnel.remote_port).
	Setting string `json:"-"`
}

// setting is the configuration key messages name for f's remote port.
func (f Forward) setting() string {
	if f.Setting == "" {
		return "portal.tunnel.remote_port"
	}
	return f.Setting
}

// Tunnel is the tunnel to build: the portal host's sshd, the account emrkit's key is
// authorized for there, that sshd's pinned key ("ssh-ed25519 AAAA...", as ssh-keyscan
// prints it without the host) and the ports to forward.
type Tunnel struct {
	Host     string
	Port     int
	User     string
	HostKey  string
	Forwards []Forward
}

func (t Tunnel) validate() error {
	if !hostRE.MatchString(t.Host) {
		return fmt.Errorf("portal.tunnel.host: %q is not a host name or address", t.Host)
	}
	if t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("portal.tunnel.port: %d is not a port (1-65535)", t.Port)
	}
	if !portalUserRE.MatchString(t.User) {
		return fmt.Errorf("portal.tunnel.user: %q is not a user name (lower-case letters, digits, _ -)", t.User)
	}
	if _, err := ParseHostKey(t.HostKey); err != nil {
		return err
	}
	if len(t.Forwards) == 0 {
		return fmt.Errorf("portal.tunnel: no port to forward")
	}
	seen := map[int]bool{}
	for _, f := range t.Forwards {
		// An account other than root cannot listen below 1024 on the portal host: sshd
		// would refuse every attempt, and the tunnel would restart for ever.
		if f.RemotePort < 1024 || f.RemotePort > 65535 {
			return fmt.Errorf("%s: %d is not a port from 1024 to 65535 (the portal account cannot listen below 1024)", f.setting(), f.RemotePort)
		}
		if f.LocalPort < 1 || f.LocalPort > 65535 {
			return fmt.Errorf("portal.tunnel.local_port: %d is not a port (1-65535)", f.LocalPort)
		}
		if seen[f.RemotePort] {
			return fmt.Errorf("%s: %d is forwarded twice; give each forward its own port", f.setting(), f.RemotePort)
		}
		seen[f.RemotePort] = true
	}
	return nil
}

// Steps are the tunnel's steps in run order: the system user, its key, the ssh_config file,
// the pinned known_hosts file, the unit file, its enablement and its start (deferred while
// systemd is not running).
func Steps(t Tunnel, env Env, since string) ([]step.Step, error) {
	if err := env.validate(); err != nil {
		return nil, err
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	cfg, err := SSHConfig(env, t)
	if err != nil {
		return nil, err
	}
	kh, err := KnownHosts(t)
	if err != nil {
		return nil, err
	}
	return []step.Step{
		UserStep{Env: env, SinceVersion: since},
		KeyStep{Env: env, SinceVersion: since},
		checkedFile{Step: managedfile.Step{Path: env.SSHConfigPath(), Content: cfg, Mode: 0o644,
			What: "ssh client configuration of the portal tunnel", SinceVersion: since},
			check: func(ctx context.Context) error { return preflightPortal(ctx, env, t) }},
		checkedFile{Step: managedfile.Step{Path: env.KnownHostsPath(), Content: kh, Mode: 0o644,
			What: "pinned key of the portal host", SinceVersion: since},
			check: func(ctx context.Context) error { return checkHostKeyFile(ctx, t) }},
		managedfile.Step{Path: env.UnitPath(), Content: Unit(env), Mode: 0o644,
			What: "systemd unit of the portal tunnel", SinceVersion: since},
		EnableStep{Env: env, SinceVersion: since},
		StartStep{Env: env, SinceVersion: since},
	}, nil
}

// Undoers knows every kind the tunnel steps journal.
func Undoers(env Env) step.Registry {
	return step.Registry{
		UserKind:         UserUndoer{Env: env},
		KeyKind:          KeyUndoer{Env: env},
		EnableKind:       EnableUndoer{Env: env},
		StartKind:        StartUndoer{Env: env},
		managedfile.Kind: managedfile.Undoer{},
	}
}

// ExecStart is the command the unit runs, as SystemUser.
func ExecStart(env Env) []string {
	return []string{sshPath, "-N", "-F", env.SSHConfigPath(), HostAlias}
}

// plainArgv joins argv for a unit file (ExecStart) and messages; the paths in it are checked
// to need no quoting.
func plainArgv(argv []string) string { return strings.Join(argv, " ") }
