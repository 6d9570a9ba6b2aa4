package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// This file decides which SSH ports must stay open (design principle 4). The decision is
// pure: Probe gathers its inputs (sshd -T, ss, SSH_CONNECTION, the process tree) so that it
// can be tested with canned outputs.

// SSHInputs is everything the SSH port decision reads.
type SSHInputs struct {
	// Configured is firewall.ssh_port (emrkit/ssh-port); 0 means detect.
	Configured int
	// SSHDConfig is the output of `sshd -T` ("" when sshd is missing or failed).
	SSHDConfig string
	// Listening is the output of `ss -Hltnp` ("" when ss is missing or failed).
	Listening string
	// Connection is SSH_CONNECTION of this session, or of the nearest ancestor that has it
	// (sudo drops it from the environment, the process tree keeps it).
	Connection string
	// UnderSSHD is set when an ancestor process is sshd: the session is remote even if
	// SSH_CONNECTION was lost.
	UnderSSHD bool
}

// SSHDetection is the decision: the ports to allow, whether the session is remote, and the
// evidence, for messages.
type SSHDetection struct {
	Ports    []int
	Remote   bool
	Evidence []string
}

// ErrSSHPortUnknown refuses to enable the firewall for a remote session whose port is unknown.
var ErrSSHPortUnknown = errors.New("cannot determine the SSH port of this remote session " +
	"(no `sshd -T`, no sshd listening in `ss -ltnp`, no SSH_CONNECTION); refusing to enable the firewall, " +
	"which could lock you out: set the port with `dpkg-reconfigure emrkit` (emrkit/ssh-port) " +
	"or firewall.ssh_port in /etc/emrkit/emrkit.yaml, then run `emrkit firewall apply`")

// DetectSSH decides the SSH ports to allow. A configured port is used as given; otherwise the
// ports sshd is configured for and listening on are used. The port of the current session is
// always added: it is in use by definition. No port is fine on a console with no sshd; no port
// for a remote session is ErrSSHPortUnknown.
func DetectSSH(in SSHInputs) (SSHDetection, error) {
	var d SSHDetection
	seen := map[int]bool{}
	add := func(p int, why string) {
		if !seen[p] {
			seen[p] = true
			d.Ports = append(d.Ports, p)
		}
		d.Evidence = append(d.Evidence, fmt.Sprintf("%s: %d", why, p))
	}
	if in.Configured != 0 {
		add(in.Configured, "firewall.ssh_port")
	} else {
		for _, p := range SSHDPorts(in.SSHDConfig) {
			add(p, "sshd -T")
		}
		for _, p := range SSHListeners(in.Listening) {
			add(p, "sshd listening (ss)")
		}
	}
	if p, ok := ConnectionPort(in.Connection); ok {
		add(p, "SSH_CONNECTION")
	}
	d.Remote = in.UnderSSHD || strings.TrimSpace(in.Connection) != ""
	d.Ports = sortedUnique(d.Ports)
	if len(d.Ports) == 0 && d.Remote {
		return d, ErrSSHPortUnknown
	}
	return d, nil
}

// SSHDPorts reads the ports from `sshd -T`: those of its listenaddress lines (which carry the
// port sshd really binds), or its port lines when there are none. Loopback-only addresses are
// left out: nobody connects to them from outside.
func SSHDPorts(out string) []int {
	var listen, plain []int
	for _, line := range strings.Split(out, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		switch strings.ToLower(key) {
		case "port":
			if p, ok := parsePort(val); ok {
				plain = append(plain, p)
			}
		case "listenaddress":
			// "0.0.0.0:22", "[::]:22", possibly followed by "rdomain X".
			f := strings.Fields(val)
			if len(f) == 0 {
				continue
			}
			host, port, ok := splitHostPort(f[0])
			if !ok || isLoopback(host) {
				continue
			}
			if p, ok := parsePort(port); ok {
				listen = append(listen, p)
			}
		}
	}
	if len(listen) > 0 {
		return sortedUnique(listen)
	}
	return sortedUnique(plain)
}

// sshProcess matches the users:(("sshd",pid=..)) column of ss; dropbear is the other SSH
// server Debian ships.
var sshProcess = regexp.MustCompile(`\("(sshd|dropbear)",pid=`)

// SSHListeners reads the TCP ports an SSH server listens on from `ss -ltnp` (with or without
// the header line), skipping loopback-only sockets.
func SSHListeners(out string) []int {
	var ports []int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "LISTEN" || !sshProcess.MatchString(line) {
			continue
		}
		host, port, ok := splitHostPort(f[3])
		if !ok || isLoopback(host) {
			continue
		}
		if p, ok := parsePort(port); ok {
			ports = append(ports, p)
		}
	}
	return sortedUnique(ports)
}

// ConnectionPort returns the server port of SSH_CONNECTION ("client_ip client_port
// server_ip server_port").
func ConnectionPort(s string) (int, bool) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return 0, false
	}
	return parsePort(f[3])
}

func parsePort(s string) (int, bool) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, false
	}
	return p, true
}

// splitHostPort splits "host:port", "[v6]:port", "*:port" and ss's "addr%iface:port".
func splitHostPort(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", false
	}
	host, port = s[:i], s[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	return host, port, true
}

func isLoopback(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
