package tunnel

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/managedfile"
)

// HostKey is a parsed public key line: "<type> <base64>".
type HostKey struct {
	Type   string
	Base64 string
	// Blob is the decoded key in SSH wire format (RFC 4253 section 6.6).
	Blob []byte
}

// hostKeyCurves are the key types a host key may have, with the curve an ECDSA key names.
var hostKeyCurves = map[string]string{
	"ssh-ed25519": "", "ssh-rsa": "",
	"ecdsa-sha2-nistp256": "nistp256", "ecdsa-sha2-nistp384": "nistp384", "ecdsa-sha2-nistp521": "nistp521",
}

// ParseHostKey checks a host key as ssh-keyscan prints it, without the host: a known type
// and a base64 blob whose wire format is a key of that type.
func ParseHostKey(s string) (HostKey, error) {
	const fix = " (copy it from `ssh-keyscan -t ed25519 <portal host>`, without the host name)"
	f := strings.Fields(s)
	if len(f) != 2 {
		return HostKey{}, errors.New("portal.tunnel.host_key: not a host key line like \"ssh-ed25519 AAAA...\"" + fix)
	}
	curve, ok := hostKeyCurves[f[0]]
	if !ok {
		return HostKey{}, fmt.Errorf("portal.tunnel.host_key: key type %.40q is not one ssh accepts for a host (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)%s", f[0], fix)
	}
	// Strict, as ssh decodes: it refuses a last character with stray bits set.
	blob, err := base64.StdEncoding.Strict().DecodeString(f[1])
	if err != nil {
		return HostKey{}, errors.New("portal.tunnel.host_key: the key is not valid base64" + fix)
	}
	if err := checkKeyBlob(f[0], curve, blob); err != nil {
		return HostKey{}, fmt.Errorf("portal.tunnel.host_key: not a %s key: %v%s", f[0], err, fix)
	}
	return HostKey{Type: f[0], Base64: f[1], Blob: blob}, nil
}

// checkKeyBlob checks the wire format of a public key of type typ.
func checkKeyBlob(typ, curve string, blob []byte) error {
	r := wire(blob)
	name, err := r.string()
	if err != nil {
		return err
	}
	if string(name) != typ {
		return fmt.Errorf("the key inside says it is %q", name)
	}
	switch {
	case typ == "ssh-ed25519":
		k, err := r.string()
		if err != nil {
			return err
		}
		if len(k) != 32 {
			return fmt.Errorf("an ed25519 key has 32 bytes, this one %d", len(k))
		}
	case typ == "ssh-rsa":
		if _, err := r.string(); err != nil { // e
			return err
		}
		n, err := r.string()
		if err != nil {
			return err
		}
		if bits := new(big.Int).SetBytes(n).BitLen(); bits < 1024 {
			return fmt.Errorf("a %d-bit RSA key is refused by ssh (1024 at least)", bits)
		}
	default:
		c, err := r.string()
		if err != nil {
			return err
		}
		if string(c) != curve {
			return fmt.Errorf("the key names curve %q", c)
		}
		q, err := r.string()
		if err != nil {
			return err
		}
		if len(q) == 0 || q[0] != 4 {
			return errors.New("the curve point is not uncompressed")
		}
	}
	if len(r) != 0 {
		return fmt.Errorf("%d bytes follow the key", len(r))
	}
	return nil
}

// wire reads SSH wire-format strings.
type wire []byte

func (w *wire) string() ([]byte, error) {
	if len(*w) < 4 {
		return nil, errors.New("truncated")
	}
	n := binary.BigEndian.Uint32(*w)
	if uint64(n) > uint64(len(*w)-4) {
		return nil, errors.New("truncated")
	}
	s := (*w)[4 : 4+n]
	*w = (*w)[4+n:]
	return s, nil
}

func (w *wire) uint32() (uint32, error) {
	if len(*w) < 4 {
		return 0, errors.New("truncated")
	}
	n := binary.BigEndian.Uint32(*w)
	*w = (*w)[4:]
	return n, nil
}

// knownHostsName is how ssh looks the portal host up in known_hosts: "host" on port 22,
// "[host]:port" on any other.
func knownHostsName(host string, port int) string {
	if port == 22 {
		return host
	}
	return "[" + host + "]:" + strconv.Itoa(port)
}

// KnownHosts is the pinned known_hosts file: the one key the portal host may present.
func KnownHosts(t Tunnel) ([]byte, error) {
	k, err := ParseHostKey(t.HostKey)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# Written by emrkit: the portal host's key (portal.tunnel.host_key), the only one the tunnel accepts.\n")
	fmt.Fprintf(&b, "%s %s %s\n", knownHostsName(t.Host, t.Port), k.Type, k.Base64)
	return b.Bytes(), nil
}

// SSHConfig is the client's whole configuration (ssh -F): one Host entry, so nothing from
// /etc/ssh/ssh_config or a home directory applies.
func SSHConfig(env Env, t Tunnel) ([]byte, error) {
	if err := env.validate(); err != nil {
		return nil, err
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return renderSSHConfig(env, t, env.KnownHostsPath()), nil
}

// renderSSHConfig writes the configuration with knownHosts as the pinned file (the preflight
// probe uses a copy in a temporary directory).
func renderSSHConfig(env Env, t Tunnel, knownHosts string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Written by emrkit: the reverse SSH tunnel to the offsite patient portal (%s).
# emrkit rewrites this file; change portal.tunnel.* in emrkit's configuration instead.
# ssh takes the first value it finds for each option: this file is all of the configuration.
Host %s
	HostName %s
	Port %d
	User %s
	IdentityFile %s
	IdentitiesOnly yes
	PubkeyAuthentication yes
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	HostbasedAuthentication no
	GSSAPIAuthentication no
	BatchMode yes
	StrictHostKeyChecking yes
	UserKnownHostsFile %s
	GlobalKnownHostsFile /dev/null
	UpdateHostKeys no
	CheckHostIP no
	VerifyHostKeyDNS no
	ConnectTimeout 30
	ServerAliveInterval 15
	ServerAliveCountMax 3
	ExitOnForwardFailure yes
	RequestTTY no
	ControlMaster no
	ControlPath none
	ForwardAgent no
	ForwardX11 no
	PermitLocalCommand no
	ProxyCommand none
`, UnitName, HostAlias, t.Host, t.Port, t.User, env.KeyPath(), knownHosts)
	// Listen on the portal host's "localhost" (what permitlisten names) and always name the
	// destination: a RemoteForward without one is a SOCKS proxy into the clinic.
	for _, f := range t.Forwards {
		fmt.Fprintf(&b, "\tRemoteForward localhost:%d localhost:%d\n", f.RemotePort, f.LocalPort)
	}
	return b.Bytes()
}

// parseForwards reads the RemoteForward lines of a configuration renderSSHConfig wrote.
func parseForwards(cfg []byte) []Forward {
	var out []Forward
	for _, line := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || !strings.EqualFold(f[0], "RemoteForward") {
			continue
		}
		var fw Forward
		if _, p, err := net.SplitHostPort(f[1]); err == nil {
			fw.RemotePort, _ = strconv.Atoi(p)
		}
		if _, p, err := net.SplitHostPort(f[2]); err == nil {
			fw.LocalPort, _ = strconv.Atoi(p)
		}
		out = append(out, fw)
	}
	return out
}

// Unit is the systemd unit that runs the tunnel (facts B2b: passes systemd-analyze verify
// and scores "OK" in systemd-analyze security).
func Unit(env Env) []byte {
	return fmt.Appendf(nil, `# Written by emrkit: the reverse SSH tunnel to the offsite patient portal.
# ssh exits when the connection or a forward fails; systemd starts it again, for ever.
[Unit]
Description=emrkit reverse SSH tunnel to the offsite patient portal
Documentation=man:ssh(1) man:ssh_config(5)
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
User=%[1]s
Group=%[1]s
ExecStart=%[2]s
Restart=always
RestartSec=%[3]d
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
CapabilityBoundingSet=
UMask=0077

[Install]
WantedBy=%[4]s
`, env.SystemUser, plainArgv(ExecStart(env)), RestartSec, wantedBy)
}

// PublicKey is the tunnel's public key line ("ssh-ed25519 AAAA... comment").
func PublicKey(env Env) (string, error) {
	data, err := fsutil.ReadFile(env.KeyPath()+".pub", fsutil.TextLimit)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("the tunnel has no key yet (%s.pub); run `emrkit apply` first", env.KeyPath())
	}
	if err != nil {
		return "", fmt.Errorf("read the tunnel's public key: %w", err)
	}
	line := strings.TrimSpace(string(data))
	f := strings.Fields(line)
	// One line only: a second would reach the portal's authorized_keys without the options.
	if len(f) < 2 || strings.ContainsAny(line, "\r\n") {
		return "", fmt.Errorf("%s.pub is not a public key line", env.KeyPath())
	}
	if _, known := hostKeyCurves[f[0]]; !known {
		return "", fmt.Errorf("%s.pub is not a public key line", env.KeyPath())
	}
	blob, err := base64.StdEncoding.Strict().DecodeString(f[1])
	if err != nil {
		return "", fmt.Errorf("%s.pub is not a public key line", env.KeyPath())
	}
	if err := checkKeyBlob(f[0], hostKeyCurves[f[0]], blob); err != nil {
		return "", fmt.Errorf("%s.pub: %v", env.KeyPath(), err)
	}
	return line, nil
}

// permitListen is the key options' list of the ports the key may listen on.
func permitListen(t Tunnel) string {
	var opts []string
	for _, f := range t.Forwards {
		opts = append(opts, fmt.Sprintf(`permitlisten="localhost:%d"`, f.RemotePort))
	}
	return strings.Join(opts, ",")
}

// AuthorizedKeyLine is the line for the authorized_keys of t.User on the portal host: the
// tunnel's key, allowed to listen on the tunnel's ports of the portal host's localhost and
// nothing else (no shell, no -L, no agent, no pty). permitlisten needs OpenSSH 7.8 there.
func AuthorizedKeyLine(env Env, t Tunnel) (string, error) {
	if len(t.Forwards) == 0 {
		return "", errors.New("portal.tunnel: no port to forward")
	}
	pub, err := PublicKey(env)
	if err != nil {
		return "", err
	}
	return `restrict,port-forwarding,` + permitListen(t) + `,command="/bin/false" ` + pub, nil
}

// SSHDMatchBlock is the block for the portal host's sshd_config that holds t.User to the
// tunnel even where authorized_keys is edited carelessly (facts B1). It leaves
// UnusedConnectionTimeout (OpenSSH 9.2) at its default, none: forwarding listeners do not
// count as open channels, so a timeout would cut an idle tunnel.
func SSHDMatchBlock(t Tunnel) string {
	var ports []string
	for _, f := range t.Forwards {
		ports = append(ports, fmt.Sprintf("localhost:%d", f.RemotePort))
	}
	return fmt.Sprintf(`Match User %s
	AuthenticationMethods publickey
	AllowTcpForwarding remote
	PermitListen %s
	PermitOpen none
	GatewayPorts no
	AllowStreamLocalForwarding no
	AllowAgentForwarding no
	X11Forwarding no
	PermitTTY no
	PermitTunnel no
	ForceCommand /bin/false
	ClientAliveInterval 15
	ClientAliveCountMax 3
`, t.User, strings.Join(ports, " "))
}

// checkedFile is a managed file whose content must pass a check before anything changes.
type checkedFile struct {
	managedfile.Step
	check func(context.Context) error
}

func (c checkedFile) Preflight(ctx context.Context) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	return c.Step.Preflight(ctx)
}
