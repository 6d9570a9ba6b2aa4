package tunnel

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	edKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIElbX8ELoTGLfJaaYv4z+UOe/euvY/34buvav65oEtc5"
	ecKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFnR7CNxfJtst1HXhtHsntGArpqK/SI3neS1Ky31XPJ5UpgLJjCr8vFyEMNF4u702okVlNqzRP3V2HMt+m7aEME="
)

// testEnv is an Env under dir that never sees systemd.
func testEnv(dir, user string) Env {
	return Env{SystemUser: user, Home: filepath.Join(dir, "home"), ConfigDir: filepath.Join(dir, "etc", "emrkit"),
		UnitDir: filepath.Join(dir, "etc", "systemd", "system"), SystemdRunning: func() bool { return false }}
}

func testTunnel() Tunnel {
	return Tunnel{Host: "portal.example", Port: 2222, User: "tunnel-clinic1", HostKey: edKey,
		Forwards: []Forward{{RemotePort: 18443, LocalPort: 443}, {RemotePort: 13306, LocalPort: 3307}}}
}

// keygen makes a key of typ with ssh-keygen and returns its public line without comment.
func keygen(t *testing.T, typ string, args ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k")
	out, err := exec.Command("ssh-keygen", append([]string{"-q", "-t", typ, "-N", "", "-C", "c", "-f", p}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -t %s: %v\n%s", typ, err, out)
	}
	pub, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	return f[0] + " " + f[1]
}

func TestParseHostKey(t *testing.T) {
	for _, k := range []string{edKey, ecKey, "  " + edKey + "\n", keygen(t, "rsa", "-b", "2048"), keygen(t, "ecdsa", "-b", "521")} {
		if _, err := ParseHostKey(k); err != nil {
			t.Errorf("%.40s: %v", k, err)
		}
	}
	ed := strings.Fields(edKey)
	for name, k := range map[string]string{
		"dsa":            keygen(t, "dsa"),
		"unknown type":   "ssh-foo " + ed[1],
		"with host":      "portal.example " + edKey,
		"type only":      "ssh-ed25519",
		"mislabelled":    "ssh-rsa " + ed[1],
		"ecdsa curve":    "ecdsa-sha2-nistp384 " + strings.Fields(ecKey)[1],
		"not base64":     "ssh-ed25519 AAAA!!!!",
		"truncated":      "ssh-ed25519 " + ed[1][:40],
		"trailing bytes": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIElbX8ELoTGLfJaaYv4z+UOe/euvY/34buvav65oEtc5AAAA",
		"certificate":    "ssh-ed25519-cert-v01@openssh.com " + ed[1],
		"security key":   "sk-ssh-ed25519@openssh.com " + ed[1],
		"empty":          "",
		"truncated rsa":  "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAQQC7",
		"with comment":   edKey + " root@portal",
	} {
		_, err := ParseHostKey(k)
		if err == nil {
			t.Errorf("%s: accepted %q", name, k)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "portal.tunnel.host_key: ") || strings.Contains(msg, "\n") {
			t.Errorf("%s: want one line naming portal.tunnel.host_key, got %q", name, msg)
		}
	}
}

func TestKnownHosts(t *testing.T) {
	for _, tc := range []struct {
		host string
		port int
		want string
	}{
		{"portal.example", 22, "portal.example " + edKey + "\n"},
		{"portal.example", 2222, "[portal.example]:2222 " + edKey + "\n"},
		{"192.0.2.10", 2222, "[192.0.2.10]:2222 " + edKey + "\n"},
		{"2001:db8::1", 2222, "[2001:db8::1]:2222 " + edKey + "\n"},
	} {
		tun := testTunnel()
		tun.Host, tun.Port = tc.host, tc.port
		got, err := KnownHosts(tun)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(got), "\n")
		if !strings.HasPrefix(lines[0], "#") || lines[1] != tc.want {
			t.Errorf("%s:%d: got %q, want a comment and %q", tc.host, tc.port, got, tc.want)
		}
	}
}

func TestSSHConfig(t *testing.T) {
	dir := t.TempDir()
	env := testEnv(dir, "emrkit-tunnel")
	cfg, err := SSHConfig(env, testTunnel())
	if err != nil {
		t.Fatal(err)
	}
	text := string(cfg)
	for _, want := range []string{
		"\nHost portal\n", "\tHostName portal.example\n", "\tPort 2222\n", "\tUser tunnel-clinic1\n",
		"\tIdentityFile " + env.KeyPath() + "\n", "\tIdentitiesOnly yes\n", "\tBatchMode yes\n",
		"\tStrictHostKeyChecking yes\n", "\tUserKnownHostsFile " + env.KnownHostsPath() + "\n",
		"\tGlobalKnownHostsFile /dev/null\n", "\tExitOnForwardFailure yes\n", "\tServerAliveInterval 15\n",
		"\tServerAliveCountMax 3\n", "\tControlMaster no\n", "\tRequestTTY no\n",
		"\tRemoteForward localhost:18443 localhost:443\n", "\tRemoteForward localhost:13306 localhost:3307\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ssh_config lacks %q:\n%s", want, text)
		}
	}
	// ssh takes the first value of an option: every option but RemoteForward appears once.
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || f[0] == "RemoteForward" {
			continue
		}
		if seen[strings.ToLower(f[0])] {
			t.Errorf("option %s appears twice", f[0])
		}
		seen[strings.ToLower(f[0])] = true
	}
	// A RemoteForward with one port argument or without a listen host is the trap of the
	// facts: a SOCKS proxy, or a listen address permitlisten="localhost:P" does not match.
	if m := regexp.MustCompile(`(?m)^\s*RemoteForward\s+(\S+)\s*$|RemoteForward\s+(127\.0\.0\.1|\d+):`).FindString(text); m != "" {
		t.Errorf("bad RemoteForward %q", m)
	}

	// The real client reads the file as intended.
	p := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh", "-G", "-F", p, HostAlias).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -G: %v\n%s", err, out)
	}
	for _, want := range []string{"hostname portal.example", "port 2222", "user tunnel-clinic1", "batchmode yes",
		"exitonforwardfailure yes", "stricthostkeychecking true", "globalknownhostsfile /dev/null",
		"userknownhostsfile " + env.KnownHostsPath(), "identitiesonly yes", "serveraliveinterval 15",
		"remoteforward [localhost]:18443 [localhost]:443", "remoteforward [localhost]:13306 [localhost]:3307",
		"updatehostkeys false", "requesttty false", "controlmaster false"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(out) {
			t.Errorf("ssh -G lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("dynamicforward")) {
		t.Errorf("ssh -G shows a dynamic (SOCKS) forward:\n%s", out)
	}
	if got := parseForwards(cfg); len(got) != 2 || got[0] != (Forward{RemotePort: 18443, LocalPort: 443}) || got[1] != (Forward{RemotePort: 13306, LocalPort: 3307}) {
		t.Errorf("parseForwards = %v", got)
	}
	if got := tunnelOf(cfg); got.Host != "portal.example" || got.Port != 2222 || got.User != "tunnel-clinic1" {
		t.Errorf("tunnelOf = %+v", got)
	}
}

func TestStepsRefuseBadInput(t *testing.T) {
	env := testEnv(t.TempDir(), "emrkit-tunnel")
	for name, tc := range map[string]struct {
		mod  func(*Env, *Tunnel)
		want string
	}{
		"host":           {func(_ *Env, t *Tunnel) { t.Host = "portal example" }, "portal.tunnel.host"},
		"option in host": {func(_ *Env, t *Tunnel) { t.Host = "-oProxyCommand=x" }, "portal.tunnel.host"},
		"port":           {func(_ *Env, t *Tunnel) { t.Port = 0 }, "portal.tunnel.port"},
		"user":           {func(_ *Env, t *Tunnel) { t.User = "Bad User" }, "portal.tunnel.user"},
		"host key":       {func(_ *Env, t *Tunnel) { t.HostKey = "ssh-dss AAAAB3NzaC1kc3MAAACBA" }, "portal.tunnel.host_key"},
		"no forwards":    {func(_ *Env, t *Tunnel) { t.Forwards = nil }, "no port to forward"},
		"low port":       {func(_ *Env, t *Tunnel) { t.Forwards[0].RemotePort = 443 }, "portal.tunnel.remote_port"},
		"local port":     {func(_ *Env, t *Tunnel) { t.Forwards[0].LocalPort = 70000 }, "portal.tunnel.local_port"},
		"duplicate":      {func(_ *Env, t *Tunnel) { t.Forwards[1].RemotePort = 18443 }, "forwarded twice"},
		"replica port": {func(_ *Env, t *Tunnel) {
			t.Forwards[1] = Forward{RemotePort: 80, LocalPort: 3307, Setting: "portal.replica.remote_port"}
		}, "portal.replica.remote_port: 80"},
		"system user":   {func(e *Env, _ *Tunnel) { e.SystemUser = "Tunnel" }, "system user"},
		"config dir":    {func(e *Env, _ *Tunnel) { e.ConfigDir = "/etc/emr kit" }, "configuration directory"},
		"percent":       {func(e *Env, _ *Tunnel) { e.UnitDir = "/etc/%h" }, "unit directory"},
		"relative home": {func(e *Env, _ *Tunnel) { e.Home = "var/lib/x" }, "home"},
	} {
		e, tun := env, testTunnel()
		tc.mod(&e, &tun)
		_, err := Steps(tun, e, Since)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line with %q", name, err, tc.want)
		}
	}
	steps, err := Steps(testTunnel(), env, Since)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range steps {
		ids = append(ids, s.ID())
		if _, ok := Undoers(env)[s.Kind()]; !ok {
			t.Errorf("no undoer for %s", s.Kind())
		}
	}
	want := []string{UserKind + ":emrkit-tunnel", KeyKind + ":" + env.KeyPath(), "file:" + env.SSHConfigPath(),
		"file:" + env.KnownHostsPath(), "file:" + env.UnitPath(), EnableKind + ":" + env.WantsLink(), StartKind + ":" + UnitName}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("steps:\n%v\nwant\n%v", ids, want)
	}
}

func TestAuthorizedKeyLine(t *testing.T) {
	env := testEnv(t.TempDir(), "emrkit-tunnel")
	if _, err := AuthorizedKeyLine(env, testTunnel()); err == nil || !strings.Contains(err.Error(), "emrkit apply") {
		t.Errorf("without a key: %v", err)
	}
	if err := os.MkdirAll(env.Home, 0o755); err != nil {
		t.Fatal(err)
	}
	pub := edKey + " emrkit-tunnel@clinic1 0123456789abcdef"
	if err := os.WriteFile(env.KeyPath()+".pub", []byte(pub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := AuthorizedKeyLine(env, testTunnel())
	if err != nil {
		t.Fatal(err)
	}
	want := `restrict,port-forwarding,permitlisten="localhost:18443",permitlisten="localhost:13306",command="/bin/false" ` + pub
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	one := testTunnel()
	one.Forwards = one.Forwards[:1]
	if got, _ := AuthorizedKeyLine(env, one); !strings.HasPrefix(got, `restrict,port-forwarding,permitlisten="localhost:18443",command="/bin/false" ssh-ed25519 `) {
		t.Errorf("one forward: %s", got)
	}
	block := SSHDMatchBlock(testTunnel())
	for _, want := range []string{"Match User tunnel-clinic1\n", "\tAllowTcpForwarding remote\n",
		"\tPermitListen localhost:18443 localhost:13306\n", "\tPermitOpen none\n", "\tForceCommand /bin/false\n"} {
		if !strings.Contains(block, want) {
			t.Errorf("Match block lacks %q", want)
		}
	}
}

func TestVersions(t *testing.T) {
	for in, want := range map[string]Version{
		"OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026": {9, 2},
		"OpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017":            {7, 4},
		"OpenSSH_10.0p2 Debian-5, OpenSSL 3.5.1 1 Jul 2025":          {10, 0},
	} {
		got, err := ParseClientVersion(in)
		if err != nil || got != want {
			t.Errorf("ParseClientVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseClientVersion("ssh: command not found"); err == nil {
		t.Error("accepted a non-version")
	}
	for in, want := range map[string]Version{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n": {9, 2},
		"SSH-2.0-OpenSSH_7.4p1 Debian-10+deb9u7":     {7, 4},
		"SSH-1.99-OpenSSH_7.8":                       {7, 8},
	} {
		if got, ok := ParseBanner(in); !ok || got != want {
			t.Errorf("ParseBanner(%q) = %v, %v", in, got, ok)
		}
	}
	for _, in := range []string{"SSH-2.0-dropbear_2022.83", "HTTP/1.1 400 Bad Request", "SSH-2.0-Go"} {
		if _, ok := ParseBanner(in); ok {
			t.Errorf("ParseBanner(%q) claims OpenSSH", in)
		}
	}
	for _, tc := range []struct {
		a, b Version
		less bool
	}{{Version{7, 4}, MinServer(), true}, {Version{7, 8}, MinServer(), false}, {Version{10, 0}, Version{9, 9}, false},
		{Version{6, 7}, MinClient(), true}, {Version{9, 2}, MinClient(), false}} {
		if tc.a.Less(tc.b) != tc.less {
			t.Errorf("%v < %v = %v", tc.a, tc.b, !tc.less)
		}
	}
	v, err := ClientVersion(context.Background())
	if err != nil || v.Less(MinClient()) {
		t.Errorf("this host's ssh: %v, %v", v, err)
	}
}

func TestUnitVerifies(t *testing.T) {
	env := DefaultEnv()
	unit := string(Unit(env))
	for _, want := range []string{"\nExecStart=/usr/bin/ssh -N -F /etc/emrkit/portal-tunnel.ssh_config portal\n",
		"\nUser=emrkit-tunnel\n", "\nGroup=emrkit-tunnel\n", "\nRestart=always\n", "\nRestartSec=10\n",
		"\nStartLimitIntervalSec=0\n", "\nWants=network-online.target\n", "\nAfter=network-online.target\n",
		"\nProtectSystem=strict\n", "\nCapabilityBoundingSet=\n", "\nSystemCallFilter=@system-service\n",
		"\nWantedBy=multi-user.target\n", "\nNoNewPrivileges=yes\n", "\nUMask=0077\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Join(ExecStart(env), " ") != "/usr/bin/ssh -N -F /etc/emrkit/portal-tunnel.ssh_config portal" {
		t.Errorf("ExecStart = %q", ExecStart(env))
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze (package systemd) is needed to verify the unit: %v", err)
	}
	p := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// verify warns on stderr and still exits 0: any output is a finding.
	out, err := exec.CommandContext(ctx, sa, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, sa, "security", "--offline=yes", p).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`).FindSubmatch(out)
	if err != nil || m == nil || string(m[2]) != "OK" {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	} else {
		t.Logf("systemd-analyze security --offline=yes: exposure %s %s", m[1], m[2])
	}
}

func TestParseShowAndClock(t *testing.T) {
	m := parseShow("ActiveState=active\nSubState=running\nNeedDaemonReload=no\nExecMainStartTimestampMonotonic=0\n")
	if m["ActiveState"] != "active" || m["SubState"] != "running" || m["NeedDaemonReload"] != "no" {
		t.Errorf("parseShow = %v", m)
	}
	if _, ok := monotonicToTime("0"); ok {
		t.Error("monotonic 0 is never")
	}
	if _, ok := monotonicToTime(""); ok {
		t.Error("empty is never")
	}
}

// TestCheckHostKeyFile: ssh-keygen reads the pinned key as ssh will, and refuses what the
// structural check lets through (an ECDSA point off its curve).
func TestCheckHostKeyFile(t *testing.T) {
	tun := testTunnel()
	ctx := context.Background()
	if err := checkHostKeyFile(ctx, tun); err != nil {
		t.Errorf("good key: %v", err)
	}
	tun.HostKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFnR7CNxfJtst1HXhtHsntGArpqK/SI3neS1Ky31XPJ5UpgLJjCr8vFyEMNF4u702okVlNqzRP3V2HMt+m7aEMA="
	if _, err := ParseHostKey(tun.HostKey); err != nil {
		t.Fatalf("the structural check should pass this key: %v", err)
	}
	err := checkHostKeyFile(ctx, tun)
	if err == nil || !strings.HasPrefix(err.Error(), "portal.tunnel.host_key: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("point off the curve: %v", err)
	}
}
