package tunnel

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file is the tunnel's lab: a private network namespace with loopback only, in which
// the portal host's sshd (its own binary run, config, host key and port, the account's
// authorized_keys file and the Match block of facts B1) and the clinic's side (an HTTPS
// server on 127.0.0.1, the tunnel's ssh run as the system user) both live. Nothing in it
// reaches the test host's network. A private mount namespace gives sshd its /run/sshd
// without creating it on the host.

// Ports inside the lab (a namespace of its own: no clash with the host).
const (
	labSSHPort    = 2222
	labRemotePort = 18443
	labLocalPort  = 8443
)

// sshdBinary is the portal host's sshd: openssh-server's, or EMRKIT_TEST_SSHD (an absolute
// path, e.g. /usr/sbin/sshd unpacked with `dpkg-deb -x` on a machine without the package).
func sshdBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("EMRKIT_TEST_SSHD")
	if p == "" {
		p = "/usr/sbin/sshd"
	}
	if !filepath.IsAbs(p) {
		t.Fatalf("EMRKIT_TEST_SSHD must be an absolute path (sshd re-executes itself): %q", p)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the tunnel lab needs sshd for the portal host (apt install openssh-server; scripts/deps.sh lists it): %v", err)
	}
	return p
}

type lab struct {
	t          *testing.T
	dir        string
	holder     *exec.Cmd
	ns, nsLink string // /proc/<holder>/ns/net and what it links to
	sshd       string
	sshdCmd    *exec.Cmd
	portalUser string
	hostKey    string // "ssh-ed25519 AAAA…"
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t, "unshare", "nsenter", "ip", "curl")
	l := &lab{t: t, dir: publicDir(t), sshd: sshdBinary(t), portalUser: testAccount("portal", 'a')}
	// The portal's account: no home, no shell; "*" is no password and not a locked account
	// (sshd refuses "!" without PAM: facts B2).
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", nologinPath, "--password", "*", l.portalUser).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { removeAccount(t, l.portalUser) })

	setup := `set -e
mount -t tmpfs -o mode=0755 lab /run
mkdir -m 0755 /run/sshd
ip link set lo up
echo ready
exec sleep 1000000`
	l.holder = exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", setup)
	out, err := l.holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.holder.Stderr = os.Stderr
	// A test killed by its timeout runs no cleanup: the namespace goes with it.
	l.holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.holder.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		l.holder.Process.Kill()
		l.holder.Wait()
		t.Fatalf("lab namespace did not start: %q %v", line, err)
	}
	l.ns = fmt.Sprintf("/proc/%d/ns/net", l.holder.Process.Pid)
	if l.nsLink, err = os.Readlink(l.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)

	hk := filepath.Join(l.dir, "hostkey")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "portal", "-f", hk).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(hk + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	l.hostKey = f[0] + " " + f[1]
	return l
}

// close stops every process in the lab's namespace (the test started all of them).
func (l *lab) close() {
	if l.sshdCmd != nil {
		l.sshdCmd.Process.Kill()
		l.sshdCmd.Wait()
	}
	for _, pid := range pidsInNetns(l.nsLink) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	l.holder.Process.Kill()
	l.holder.Wait()
	if l.t.Failed() {
		l.t.Logf("portal sshd log:\n%s", l.sshdLogText())
	}
}

// in runs f in the lab's network namespace.
func (l *lab) in(f func() error) error { return inNetns(l.ns, f) }

// sshdConfig is the portal host's sshd configuration for the tunnel t (facts B3, B1): no
// forwarding for anyone but the tunnel's account, and that one held by the Match block.
func (l *lab) sshdConfig(t Tunnel) string {
	return fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s/authorized_keys.%%u
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding no
LogLevel VERBOSE
`, labSSHPort, filepath.Join(l.dir, "hostkey"), filepath.Join(l.dir, "sshd.pid"), l.dir) + SSHDMatchBlock(t)
}

// startSSHD starts the portal host's sshd (in the lab's mount namespace for /run/sshd) and
// waits until it answers.
func (l *lab) startSSHD(t Tunnel) {
	l.t.Helper()
	cfg := filepath.Join(l.dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(l.sshdConfig(t)), 0o644); err != nil {
		l.t.Fatal(err)
	}
	nsenter := []string{"nsenter", "-t", strconv.Itoa(l.holder.Process.Pid), "-m", "-n", "--"}
	if out, err := exec.Command(nsenter[0], append(nsenter[1:], l.sshd, "-t", "-f", cfg)...).CombinedOutput(); err != nil {
		l.t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	// -E, not -e: sessions outlive the listener and would hold a stderr pipe open.
	l.sshdCmd = exec.Command(nsenter[0], append(nsenter[1:], l.sshd, "-D", "-E", l.sshdLogPath(), "-f", cfg)...)
	l.sshdCmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.sshdCmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.in(func() error {
			_, err := Banner(ctxT(l.t, time.Second), "127.0.0.1", labSSHPort, time.Second)
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("the portal sshd does not answer: %v\n%s", err, l.sshdLogText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *lab) sshdLogPath() string { return filepath.Join(l.dir, "sshd.log") }

func (l *lab) sshdLogText() string {
	data, _ := os.ReadFile(l.sshdLogPath())
	return string(data)
}

// stopSSHD stops the sshd listener only: sessions keep running in their own processes, as
// after `systemctl restart ssh` on a Debian portal host (KillMode=process).
func (l *lab) stopSSHD() {
	l.sshdCmd.Process.Signal(syscall.SIGTERM)
	l.sshdCmd.Wait()
	l.sshdCmd = nil
}

// killPortal kills every sshd process of the portal host, sessions included: the portal
// host went down.
func (l *lab) killPortal() {
	l.sshdCmd.Process.Kill()
	l.sshdCmd.Wait()
	l.sshdCmd = nil
	exe, _ := filepath.EvalSymlinks(l.sshd)
	for _, pid := range pidsInNetns(l.nsLink) {
		if p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && p == exe {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// clinicHTTPS serves the clinic's "EMR" on 127.0.0.1:labLocalPort in the lab.
func (l *lab) clinicHTTPS(body string) {
	l.t.Helper()
	var ln net.Listener
	if err := l.in(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", labLocalPort))
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.StartTLS()
	l.t.Cleanup(srv.Close)
}

// get fetches https://127.0.0.1:port/ in the lab, as the portal would through the tunnel,
// and returns the body.
func (l *lab) get(port int) (string, error) {
	var body string
	err := l.in(func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) // the lab's throw-away certificate
		if _, err := io.WriteString(tc, "GET / HTTP/1.0\r\nHost: clinic\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	return body, err
}

// waitGet polls get until it returns want, and returns when that was.
func (l *lab) waitGet(port int, want string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		body, err := l.get(port)
		if err == nil && body == want {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no answer through the tunnel within %s: %q %v", limit, body, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runAs runs argv in the lab as the account and returns what it printed.
func (l *lab) runAs(a *account, limit time.Duration, argv ...string) result {
	l.t.Helper()
	var r result
	l.in(func() error {
		r, _ = run(ctxT(l.t, limit), a, argv...)
		return nil
	})
	return r
}

// supervisor runs the unit's ExecStart as the system user and, like systemd with
// Restart=always, runs it again restartSec after it exits.
type supervisor struct {
	l          *lab
	argv       []string
	as         *account
	env        []string
	restartSec time.Duration
	stderr     syncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	starts []time.Time
	exits  []time.Time
	stop   chan struct{}
	done   chan struct{}
}

func (l *lab) supervise(env Env, a *account, restartSec time.Duration) *supervisor {
	s := &supervisor{l: l, argv: ExecStart(env), as: a, restartSec: restartSec,
		// What systemd gives a service with User=: HOME, USER, LOGNAME, SHELL, PATH.
		env: []string{"HOME=" + env.Home, "USER=" + a.Name, "LOGNAME=" + a.Name, "SHELL=" + nologinPath,
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	l.t.Cleanup(s.halt)
	return s
}

func (s *supervisor) loop() {
	defer close(s.done)
	for {
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		cmd.Env, cmd.Dir, cmd.Stderr = s.env, "/", &s.stderr
		cmd.SysProcAttr = s.as.credential()
		s.mu.Lock()
		select {
		case <-s.stop:
			s.mu.Unlock()
			return
		default:
		}
		err := s.l.in(cmd.Start)
		s.cmd = cmd
		s.starts = append(s.starts, time.Now())
		s.mu.Unlock()
		if err == nil {
			err = cmd.Wait()
		}
		s.mu.Lock()
		s.exits = append(s.exits, time.Now())
		s.mu.Unlock()
		fmt.Fprintf(&s.stderr, "[supervisor: ssh exited: %v]\n", err)
		select {
		case <-s.stop:
			return
		case <-time.After(s.restartSec):
		}
	}
}

// pid is the running ssh's pid.
func (s *supervisor) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *supervisor) lastExit() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.exits) == 0 {
		return time.Time{}
	}
	return s.exits[len(s.exits)-1]
}

func (s *supervisor) lastStart() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts[len(s.starts)-1]
}

// halt stops the loop and the running ssh.
func (s *supervisor) halt() {
	select {
	case <-s.stop:
		return
	default:
	}
	s.mu.Lock()
	close(s.stop)
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
	}
	s.mu.Unlock()
	<-s.done
}
