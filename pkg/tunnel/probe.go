package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// Version is an OpenSSH release, e.g. 9.2.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	return v.Major < o.Major || v.Major == o.Major && v.Minor < o.Minor
}

// The oldest OpenSSH releases the tunnel works with. The client: UpdateHostKeys (6.8) is the
// newest option the ssh_config file uses, and an older ssh refuses the whole file. The
// portal host: permitlisten in authorized_keys (7.8); an older sshd rejects the key line.
const (
	minClientMajor, minClientMinor = 6, 8
	minServerMajor, minServerMinor = 7, 8
)

// MinClient is the oldest local OpenSSH client the tunnel's configuration works with.
func MinClient() Version { return Version{minClientMajor, minClientMinor} }

// MinServer is the oldest OpenSSH server on the portal host that honours the key's options.
func MinServer() Version { return Version{minServerMajor, minServerMinor} }

var (
	clientVersionRE = regexp.MustCompile(`\bOpenSSH_(\d+)\.(\d+)`)
	bannerRE        = regexp.MustCompile(`^SSH-(?:2\.0|1\.99)-OpenSSH_(\d+)\.(\d+)`)
)

// ParseClientVersion reads the release from what `ssh -V` prints
// ("OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026").
func ParseClientVersion(s string) (Version, error) {
	m := clientVersionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("not an OpenSSH version: %q", strings.TrimSpace(s))
	}
	return atoiVersion(m[1], m[2]), nil
}

// ParseBanner reads the release from an sshd's identification string
// ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6"); ok is false for other servers.
func ParseBanner(s string) (v Version, ok bool) {
	m := bannerRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Version{}, false
	}
	return atoiVersion(m[1], m[2]), true
}

func atoiVersion(major, minor string) Version {
	a, _ := strconv.Atoi(major)
	b, _ := strconv.Atoi(minor)
	return Version{a, b}
}

// ClientVersion is the local ssh's release.
func ClientVersion(ctx context.Context) (Version, error) {
	if _, err := os.Stat(sshPath); err != nil {
		return Version{}, fmt.Errorf("%s is missing; apt install openssh-client", sshPath)
	}
	r, err := run(ctx, nil, sshPath, "-V")
	if err != nil {
		return Version{}, err
	}
	return ParseClientVersion(r.stderr + r.stdout)
}

// bannerTimeout bounds the look at the portal host's sshd: an unreachable host is no error.
const bannerTimeout = 3 * time.Second

// Banner is the identification string the sshd at host:port sends first (RFC 4253 4.2:
// other lines may come before it).
func Banner(ctx context.Context, host string, port int, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	}
	r := bufio.NewReaderSize(conn, 512)
	for range 20 {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "SSH-") {
			return strings.TrimRight(line, "\r\n"), nil
		}
		if err != nil {
			return "", fmt.Errorf("%s:%d sent no SSH identification: %w", host, port, err)
		}
	}
	return "", fmt.Errorf("%s:%d sent no SSH identification", host, port)
}

// Errors of a probe.
var (
	// ErrForwardRefused: the portal host accepted the key but not a forward (*ProbeError
	// names the port).
	ErrForwardRefused = errors.New("remote port forwarding refused")
	// ErrHostKeyMismatch: the portal host's key is not the pinned one.
	ErrHostKeyMismatch = errors.New("host key verification failed")
	// ErrNotAuthorized: the portal host does not accept the tunnel's key.
	ErrNotAuthorized = errors.New("key not authorized")
	// ErrUnreachable: no SSH session came about (no route, refused, timed out, no name).
	ErrUnreachable = errors.New("portal host unreachable")
)

// ProbeError is a failed probe: Kind is one of the Err* values, Message says what to do.
type ProbeError struct {
	Kind    error
	Port    int // the refused port, for ErrForwardRefused
	Message string
}

func (e *ProbeError) Error() string { return e.Message }
func (e *ProbeError) Unwrap() error { return e.Kind }

// probeTimeout bounds one probe: ConnectTimeout covers TCP and the SSH handshake.
const probeTimeout = 20 * time.Second

var refusedPortRE = regexp.MustCompile(`remote port forwarding failed for listen port (\d+)`)

// probe runs ssh once with the configuration at cfg, as the system user when a is not nil:
// it connects, asks for every forward and runs no shell (the portal account has none). The
// tunnel's forwards stay for the moment the probe lasts.
func probe(ctx context.Context, cfg string, t Tunnel, a *account) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r, err := run(ctx, a, sshPath, "-F", cfg, "-o", "ConnectTimeout=10", "-T", HostAlias, "true")
	if err == nil || r.code >= 0 && r.code != 255 {
		return nil // the session ran: every forward was granted (ExitOnForwardFailure)
	}
	where := fmt.Sprintf("%s@%s port %d", t.User, t.Host, t.Port)
	switch out := r.stderr; {
	case refusedPortRE.MatchString(out):
		port, _ := strconv.Atoi(refusedPortRE.FindStringSubmatch(out)[1])
		setting := Forward{}.setting()
		for _, f := range t.Forwards {
			if f.RemotePort == port {
				setting = f.setting()
			}
		}
		return &ProbeError{Kind: ErrForwardRefused, Port: port, Message: fmt.Sprintf(
			"the portal host %s refused to listen on localhost:%d (the port is in use there, or the key does not permit it): "+
				"check %s, and that %s's authorized_keys on the portal host holds the line `emrkit portal authorized-key` prints",
			where, port, setting, t.User)}
	case strings.Contains(out, "Host key verification failed"):
		return &ProbeError{Kind: ErrHostKeyMismatch, Message: fmt.Sprintf(
			"the portal host %s presented a key other than portal.tunnel.host_key: check the key (ssh-keygen -lf on the portal host's /etc/ssh/ssh_host_*_key.pub) and set portal.tunnel.host_key to it",
			where)}
	case strings.Contains(out, "Permission denied"):
		return &ProbeError{Kind: ErrNotAuthorized, Message: fmt.Sprintf(
			"the portal host %s does not accept the tunnel's key yet: add the line `emrkit portal authorized-key` prints to %s's authorized_keys there",
			where, t.User)}
	default:
		msg := lastLine(out)
		if msg == "" {
			msg = err.Error()
		}
		return &ProbeError{Kind: ErrUnreachable, Message: fmt.Sprintf("no SSH session with %s: %s", where, msg)}
	}
}

// Probe connects to the portal host once with the installed configuration and key, asks for
// the tunnel's forwards and reports why that failed (a *ProbeError). While the tunnel runs it
// holds the forwards itself, so Probe does not compete with it and reports nil.
func Probe(ctx context.Context, env Env) error {
	cfg, err := fsutil.ReadFile(env.SSHConfigPath(), fsutil.TextLimit)
	if err != nil {
		return fmt.Errorf("no tunnel configuration (%v); run `emrkit apply`", err)
	}
	a, err := lookupAccount(env.SystemUser)
	if err != nil {
		return fmt.Errorf("tunnel user %s: %v; run `emrkit apply`", env.SystemUser, err)
	}
	if _, err := os.Stat(env.KeyPath()); err != nil {
		return fmt.Errorf("the tunnel has no key (%v); run `emrkit apply`", err)
	}
	if len(tunnelPIDs("/proc", a.UID, ExecStart(env))) > 0 {
		return nil
	}
	return probe(ctx, env.SSHConfigPath(), tunnelOf(cfg), a)
}

// tunnelOf reads back, for messages, what an installed configuration connects to.
func tunnelOf(cfg []byte) Tunnel {
	var t Tunnel
	for _, line := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "HostName":
			t.Host = f[1]
		case "Port":
			t.Port, _ = strconv.Atoi(f[1])
		case "User":
			t.User = f[1]
		}
	}
	t.Forwards = parseForwards(cfg)
	return t
}

// preflightPortal checks, before anything changes, what would make the tunnel fail for
// ever: a local ssh too old for the configuration, and — when the configuration is new or
// changed and the portal host answers — an sshd too old for permitlisten, a host key that
// is not the pinned one, or a port the portal host refuses (tried when the key exists and
// the tunnel is not running). An unreachable portal host is no error: the tunnel retries.
func preflightPortal(ctx context.Context, env Env, t Tunnel) error {
	v, err := ClientVersion(ctx)
	if err != nil {
		return err
	}
	if v.Less(MinClient()) {
		return fmt.Errorf("the local OpenSSH client is %s; the portal tunnel needs %s or newer: upgrade openssh-client", v, MinClient())
	}
	for _, dir := range []string{env.ConfigDir, filepath.Dir(env.Home)} {
		if err := traversable(dir, env.SystemUser); err != nil {
			return err
		}
	}
	cfg := renderSSHConfig(env, t, env.KnownHostsPath())
	kh, err := KnownHosts(t)
	if err != nil {
		return err
	}
	if same(env.SSHConfigPath(), cfg) && same(env.KnownHostsPath(), kh) {
		return nil // checked when it was written; the tunnel's own retries cover the rest
	}
	banner, err := Banner(ctx, t.Host, t.Port, bannerTimeout)
	if err != nil {
		return nil
	}
	if sv, ok := ParseBanner(banner); ok && sv.Less(MinServer()) {
		return fmt.Errorf("the portal host %s:%d runs OpenSSH %s; the tunnel's authorized_keys line (permitlisten) needs %s or newer there: upgrade openssh-server on the portal host",
			t.Host, t.Port, sv, MinServer())
	}
	a, err := lookupAccount(env.SystemUser)
	if err != nil {
		return nil // no user, no key yet: nothing to probe with
	}
	if _, err := os.Stat(env.KeyPath()); err != nil || len(tunnelPIDs("/proc", a.UID, ExecStart(env))) > 0 {
		return nil
	}
	dir, err := os.MkdirTemp("", "emrkit-tunnel-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	khPath, cfgPath := filepath.Join(dir, "known_hosts"), filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(khPath, kh, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, renderSSHConfig(env, t, khPath), 0o644); err != nil {
		return err
	}
	err = probe(ctx, cfgPath, t, a)
	if errors.Is(err, ErrForwardRefused) || errors.Is(err, ErrHostKeyMismatch) {
		return err
	}
	return nil // not authorized yet or gone away: the tunnel retries until it is
}

// same reports whether path holds exactly content.
func same(path string, content []byte) bool {
	cur, err := fsutil.ReadFile(path, fsutil.TextLimit)
	return err == nil && bytes.Equal(cur, content)
}

// checkHostKeyFile has ssh-keygen read the pinned key, as ssh will.
func checkHostKeyFile(ctx context.Context, t Tunnel) error {
	if _, err := os.Stat(sshKeygenPath); err != nil {
		return fmt.Errorf("%s is missing; apt install openssh-client", sshKeygenPath)
	}
	kh, err := KnownHosts(t)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "emrkit-hostkey-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(kh)
	if err := errors.Join(werr, f.Close()); err != nil {
		return err
	}
	if _, err := run(ctx, nil, sshKeygenPath, "-l", "-f", f.Name()); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return errors.New("portal.tunnel.host_key: ssh-keygen does not accept it as a public key (copy it from `ssh-keyscan -t ed25519 <portal host>`, without the host name)")
	}
	return nil
}

// traversable checks that a user other than root may pass through dir and every directory
// above it: ssh runs as the system user and reads its files there.
func traversable(dir, who string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.IsDir() && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("ssh runs as %s and cannot pass through %s (mode %04o): chmod o+x %s", who, d, fi.Mode().Perm(), d)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}
