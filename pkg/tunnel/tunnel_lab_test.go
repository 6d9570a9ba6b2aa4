package tunnel

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// TestTunnelLab applies the tunnel's steps with a real runner and journal, authorizes the key
// on a real portal sshd, runs exactly ExecStart as the system user and fetches the clinic's
// HTTPS page from the portal side through the tunnel. With the same key a shell, another
// remote port and a local forward are refused, and a wrong pinned host key stops the
// tunnel. It measures the time to the first forwarded byte and the reconnect after the
// portal host went down, with the unit's restart loop emulated. Then the preflight refuses
// a port the portal host does not permit and a host key it does not have, and undo leaves
// no account behind.
func TestTunnelLab(t *testing.T) {
	l := newLab(t)
	env := newEnv(t, l.dir, testAccount("tunnel", 'l'))
	tun := Tunnel{Host: "127.0.0.1", Port: labSSHPort, User: l.portalUser, HostKey: l.hostKey,
		Forwards: []Forward{{RemotePort: labRemotePort, LocalPort: labLocalPort}}}
	l.startSSHD(tun)
	page := fmt.Sprintf("OpenEMR at the clinic %d\n", time.Now().UnixNano())
	l.clinicHTTPS(page)

	// Apply: the portal answers, the key does not exist yet, so nothing is probed.
	r, out, journalPath := newRunner(t, env)
	steps, err := Steps(tun, env, Since)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.in(func() error {
		rep, err := r.Apply(ctxT(t, time.Minute), steps)
		if err == nil && (rep.Applied != 6 || rep.Deferred != 1) {
			err = fmt.Errorf("report %+v, want 6 applied and the start deferred", rep)
		}
		return err
	}); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Logf("apply (user, key, 2 files, unit, enable; start deferred) took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out.String(), "systemd is not running") {
		t.Errorf("the start was not deferred for systemd:\n%s", out)
	}
	a, err := lookupAccount(env.SystemUser)
	if err != nil {
		t.Fatal(err)
	}
	assertKey(t, env, a, journalPath)

	st, err := Status(ctxT(t, 10*time.Second), env)
	if err != nil || st.Up || !strings.Contains(st.Detail, "systemd is not running: it starts at boot") {
		t.Errorf("status before the tunnel runs: %+v %v", st, err)
	}

	// The portal host's admin adds the line emrkit prints.
	line, err := AuthorizedKeyLine(env, tun)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("authorized_keys: %s", line)
	if err := os.WriteFile(filepath.Join(l.dir, "authorized_keys."+l.portalUser), []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The unit's command, as the system user, restarted like systemd would.
	sup := l.supervise(env, a, RestartSec*time.Second)
	first, err := l.waitGet(labRemotePort, page, 15*time.Second)
	if err != nil {
		t.Fatalf("%v\nssh: %s", err, sup.stderr.String())
	}
	t.Logf("MEASURED time from the tunnel's ssh start to the first forwarded response: %s", first.Sub(sup.lastStart()).Round(time.Millisecond))
	curl := exec.Command("nsenter", "--net="+l.ns, "--", "curl", "-sk", "--max-time", "5", fmt.Sprintf("https://localhost:%d/", labRemotePort))
	if got, err := curl.CombinedOutput(); err != nil || string(got) != page {
		t.Errorf("curl on the portal side: %v %q", err, got)
	}

	st, err = Status(ctxT(t, 10*time.Second), env)
	if err != nil || !st.Up || st.Since == "" || len(st.PIDs) != 1 || st.PIDs[0] != sup.pid() {
		t.Errorf("status with the tunnel running: %+v %v", st, err)
	}
	if fp, _ := exec.Command("ssh-keygen", "-l", "-f", env.KeyPath()+".pub").Output(); st.Key == "" || !strings.Contains(string(fp), st.Key) {
		t.Errorf("status key %q, ssh-keygen says %s", st.Key, fp)
	}
	if len(st.Forwards) != 1 || st.Forwards[0] != tun.Forwards[0] {
		t.Errorf("status forwards %v", st.Forwards)
	}
	t.Logf("status: %s", st.Detail)
	if err := Probe(ctxT(t, 30*time.Second), env); err != nil {
		t.Errorf("probe while the tunnel runs: %v", err)
	}

	t.Run("same key", func(t *testing.T) { sameKeyRefusals(t, l, env, a, tun) })

	// The portal's sshd restarts (Debian's ssh.service keeps sessions: KillMode=process):
	// the tunnel does not notice.
	pid := sup.pid()
	l.stopSSHD()
	l.startSSHD(tun)
	at := time.Now()
	if _, err := l.waitGet(labRemotePort, page, 5*time.Second); err != nil || sup.pid() != pid {
		t.Errorf("after the portal sshd's restart: %v (ssh pid %d, was %d)", err, sup.pid(), pid)
	}
	t.Logf("MEASURED portal sshd restarted, sessions kept: forwarded again after %s, same ssh process", time.Since(at).Round(time.Millisecond))

	// The portal host goes down, sessions and all, and comes back at once: ssh exits, the
	// restart loop runs it again after RestartSec.
	l.killPortal()
	down := time.Now()
	l.startSSHD(tun)
	back, err := l.waitGet(labRemotePort, page, (RestartSec+15)*time.Second)
	if err != nil {
		t.Fatalf("no reconnect: %v\nssh: %s", err, sup.stderr.String())
	}
	t.Logf("MEASURED portal host down and back at once: forwarded again after %s (ssh exited %s after the kill, ran again RestartSec=%ds later, first response %s after that start)",
		back.Sub(down).Round(time.Millisecond), sup.lastExit().Sub(down).Round(time.Millisecond), RestartSec, back.Sub(sup.lastStart()).Round(time.Millisecond))
	sup.halt()

	t.Run("preflight", func(t *testing.T) { preflightRefusals(t, l, env, tun, r, journalPath) })

	if err := l.in(func() error { return Probe(ctxT(t, 30*time.Second), env) }); err != nil {
		t.Errorf("probe of the authorized, stopped tunnel: %v", err)
	}

	rep, err := r.Revert(ctxT(t, time.Minute), func(journal.Entry) bool { return true })
	if err != nil || rep.Undone != 6 {
		t.Errorf("revert: %+v %v\n%s", rep, err, out)
	}
	if _, err := lookupAccount(env.SystemUser); !errors.Is(err, errNoAccount) {
		t.Errorf("the system user survived undo: %v", err)
	}
	if _, err := os.Stat(env.Home); !os.IsNotExist(err) {
		t.Errorf("the home survived undo: %v", err)
	}
}

// assertKey checks the key's owner and mode and that the journal never saw it.
func assertKey(t *testing.T, env Env, a *account, journalPath string) {
	t.Helper()
	for p, mode := range map[string]os.FileMode{env.KeyPath(): 0o600, env.KeyPath() + ".pub": 0o644} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != mode || int(st.Uid) != a.UID || int(st.Gid) != a.GID {
			t.Errorf("%s: mode %v uid %d gid %d, want %v %d %d", p, fi.Mode().Perm(), st.Uid, st.Gid, mode, a.UID, a.GID)
		}
	}
	priv, err := os.ReadFile(env.KeyPath())
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(journalPath)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Split(strings.TrimSpace(string(priv)), "\n")
	for _, l := range body[1 : len(body)-1] {
		if strings.Contains(string(j), l) {
			t.Fatalf("the journal holds the private key")
		}
	}
	if strings.Contains(string(j), "PRIVATE KEY") {
		t.Fatal("the journal holds a private key")
	}
	_, comment, err := readPrivateKey(env.KeyPath())
	if err != nil || !strings.HasPrefix(comment, env.SystemUser+"@") || !strings.Contains(string(j), comment) {
		t.Errorf("key comment %q (%v) is not the journaled one", comment, err)
	}
	if fi, err := os.Stat(env.Home); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(a.UID) {
		t.Errorf("home %s: %v", env.Home, err)
	}
	if a.Home != env.Home || a.Shell != nologinPath {
		t.Errorf("account %+v", a)
	}
}

// sameKeyRefusals: with the key that runs the tunnel, nothing else is possible.
func sameKeyRefusals(t *testing.T, l *lab, env Env, a *account, tun Tunnel) {
	write := func(name string, data []byte) string {
		p := filepath.Join(l.dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noForwards := tun
	noForwards.Forwards = nil
	plain := write("plain.ssh_config", renderSSHConfig(env, noForwards, env.KnownHostsPath()))

	// No shell: a command gets the account's nologin, whatever it asks for.
	r := l.runAs(a, 20*time.Second, sshPath, "-F", plain, "-T", HostAlias, "id")
	if r.code == 0 || r.code == 255 || strings.Contains(r.stdout, "uid=") {
		t.Errorf("ssh portal id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("ssh … id: exit %d: %s", r.code, strings.TrimSpace(r.stdout+r.stderr))

	// Another remote port: refused, and ssh exits (ExitOnForwardFailure).
	other := tun
	other.Forwards = []Forward{{RemotePort: 19443, LocalPort: labLocalPort}}
	otherCfg := write("other.ssh_config", renderSSHConfig(env, other, env.KnownHostsPath()))
	r = l.runAs(a, 20*time.Second, sshPath, "-N", "-F", otherCfg, HostAlias)
	if r.code != 255 || !strings.Contains(r.stderr, "remote port forwarding failed for listen port 19443") {
		t.Errorf("-R 19443: exit %d: %s", r.code, r.stderr)
	}
	// The same as 127.0.0.1:18443 (permitlisten's "localhost" is a name, facts B1): refused.
	trap := write("trap.ssh_config", []byte(strings.Replace(string(renderSSHConfig(env, noForwards, env.KnownHostsPath())),
		"\tProxyCommand none\n", fmt.Sprintf("\tProxyCommand none\n\tRemoteForward 127.0.0.1:%d localhost:%d\n", labRemotePort, labLocalPort), 1)))
	r = l.runAs(a, 20*time.Second, sshPath, "-N", "-F", trap, HostAlias)
	if r.code != 255 || !strings.Contains(r.stderr, "remote port forwarding failed") {
		t.Errorf("-R 127.0.0.1:%d: exit %d: %s", labRemotePort, r.code, r.stderr)
	}
	var perr *ProbeError
	if err := l.in(func() error { return probe(ctxT(t, 30*time.Second), otherCfg, other, a) }); !errors.As(err, &perr) || perr.Kind != ErrForwardRefused || perr.Port != 19443 {
		t.Errorf("probe of port 19443: %v", err)
	}

	// A local forward: the channel is administratively prohibited.
	var stderr syncBuffer
	cmd := exec.Command(sshPath, "-N", "-F", plain, "-L", "127.0.0.1:19000:127.0.0.1:"+fmt.Sprint(labRemotePort), HostAlias)
	cmd.Env, cmd.Stderr, cmd.SysProcAttr = toolEnv, &stderr, a.credential()
	if err := l.in(cmd.Start); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(stderr.String(), "administratively prohibited") {
		l.in(func() error {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:19000", time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			buf := make([]byte, 512)
			n, _ := conn.Read(buf)
			got = append(got, buf[:n]...)
			return nil
		})
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "administratively prohibited") || len(got) > 0 {
		t.Errorf("-L: read %q, ssh said %s", got, stderr.String())
	}

	// A wrong pinned key: ssh refuses the portal host.
	wrong := tun
	wrong.HostKey = keygen(t, "ed25519")
	kh, err := KnownHosts(wrong)
	if err != nil {
		t.Fatal(err)
	}
	whk := write("wrong.known_hosts", kh)
	r = l.runAs(a, 20*time.Second, sshPath, "-N", "-F", write("wrong.ssh_config", renderSSHConfig(env, tun, whk)), HostAlias)
	if r.code != 255 || !strings.Contains(r.stderr, "Host key verification failed.") {
		t.Errorf("wrong host key: exit %d: %s", r.code, r.stderr)
	}
}

// preflightRefusals: with the tunnel stopped and its key authorized, an apply that would
// forward a port the portal host refuses, or pin a key it does not have, fails in one line
// and changes nothing.
func preflightRefusals(t *testing.T, l *lab, env Env, tun Tunnel, r *step.Runner, journalPath string) {
	snapshot := func() string {
		var b strings.Builder
		for _, p := range []string{journalPath, env.SSHConfigPath(), env.KnownHostsPath(), env.KeyPath()} {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
		return b.String()
	}
	before := snapshot()
	// squat holds the portal host's localhost:port (both loopback addresses, as sshd binds
	// "localhost" on each) the way another clinic's tunnel or a portal service would.
	squat := func(port int) func() {
		var ls []net.Listener
		err := l.in(func() error {
			for _, addr := range []string{"127.0.0.1", "::1"} {
				// The stopped tunnel's session may still hold the port for a moment on
				// the portal's side: wait for sshd to let it go.
				ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
				for deadline := time.Now().Add(10 * time.Second); errors.Is(err, syscall.EADDRINUSE) && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
					ln, err = net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
				}
				if err != nil {
					if addr == "::1" {
						continue // no IPv6 loopback in this namespace
					}
					return err
				}
				ls = append(ls, ln)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return func() {
			for _, ln := range ls {
				ln.Close()
			}
		}
	}
	for name, tc := range map[string]struct {
		mod   func(*Tunnel)
		want  []string
		setup func() func()
	}{
		// The permitted port, taken on the portal host: a changed local port makes the
		// preflight probe the forward, which the portal's sshd cannot bind.
		"remote port in use": {func(t *Tunnel) { t.Forwards = []Forward{{RemotePort: labRemotePort, LocalPort: labLocalPort + 1}} },
			[]string{fmt.Sprintf("localhost:%d", labRemotePort), "portal.tunnel.remote_port"}, func() func() { return squat(labRemotePort) }},
		"remote port": {func(t *Tunnel) { t.Forwards = []Forward{{RemotePort: 19443, LocalPort: labLocalPort}} },
			[]string{"localhost:19443", "portal.tunnel.remote_port", "`emrkit portal authorized-key`"}, nil},
		"second port": {func(t *Tunnel) {
			t.Forwards = []Forward{{RemotePort: labRemotePort, LocalPort: labLocalPort}, {RemotePort: 13306, LocalPort: 3307, Setting: "portal.replica.remote_port"}}
		}, []string{"localhost:13306", "portal.replica.remote_port"}, nil},
		"host key": {func(t *Tunnel) { t.HostKey = keygen(l.t, "ed25519") }, []string{"portal.tunnel.host_key"}, nil},
	} {
		release := func() {}
		if tc.setup != nil {
			release = tc.setup()
		}
		tt := tun
		tc.mod(&tt)
		steps, err := Steps(tt, env, Since)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = l.in(func() error {
			_, err := r.Apply(ctxT(t, time.Minute), steps)
			return err
		})
		release()
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "(nothing was changed)") {
			t.Errorf("%s: want one line and nothing changed, got %v", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not name %s", name, err, w)
			}
		}
		t.Logf("%s refused in %s: %v", name, time.Since(start).Round(time.Millisecond), err)
		if snapshot() != before {
			t.Errorf("%s: the refused apply changed the journal or the tunnel's files", name)
		}
	}
}
