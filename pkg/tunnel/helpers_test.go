package tunnel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// The tests add throw-away accounts named emrkit-tunnel-t<pid><letter> (the clinic's system
// user) and emrkit-portal-t<pid><letter> (the portal host's account); the pid lets a later
// run remove what a killed run left.
var testAccountRE = regexp.MustCompile(`^emrkit-(tunnel|portal)-t(\d+)[a-z]$`)

// requireRoot fails (never skips: `make test` runs as root on a machine prepared by
// scripts/deps.sh) without root and the account tools.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the tunnel tests need root (system accounts, network namespaces); run `make test` as root")
	}
	for _, tool := range append([]string{"adduser", "deluser", "useradd", "userdel", "ssh", "ssh-keygen"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the tunnel tests need %s (adduser, passwd, openssh-client, iproute2, util-linux, curl): %v", tool, err)
		}
	}
	sweepStaleAccounts(t)
}

// sweepStaleAccounts removes the accounts of earlier runs whose process is gone.
func sweepStaleAccounts(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, _, _ := strings.Cut(line, ":")
		m := testAccountRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[2]); err == nil {
			continue // a live run
		}
		removeAccount(t, name)
	}
}

// testAccount is a fresh account name for this run.
func testAccount(side string, letter byte) string {
	return fmt.Sprintf("emrkit-%s-t%d%c", side, os.Getpid(), letter)
}

// removeAccount kills the account's processes (the test started them all) and removes it
// with its group.
func removeAccount(t *testing.T, name string) {
	t.Helper()
	a, err := lookupAccount(name)
	if err != nil {
		return
	}
	for _, pid := range uidPIDs("/proc", a.UID) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(50 * time.Millisecond)
	if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
		t.Errorf("userdel %s: %v\n%s", name, err, out)
	}
	exec.Command("groupdel", name).Run() // gone with the user when it was its own group
}

// accountLines are the lines of the account files that name user, for before/after
// comparisons.
func accountLines(t *testing.T, user string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if fields := strings.Split(line, ":"); fields[0] == user || len(fields) > 3 && strings.Contains(","+fields[3]+",", ","+user+",") {
				fmt.Fprintf(&b, "%s: %s\n", f, line)
			}
		}
	}
	return b.String()
}

// publicDir is a temporary directory the system user can traverse (t.TempDir is 0700).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "emrkit-tunnel-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newEnv is an Env under dir for a test account, with the configuration and unit
// directories a Debian host has.
func newEnv(t *testing.T, dir, user string) Env {
	t.Helper()
	env := testEnv(dir, user)
	for _, d := range []string{env.ConfigDir, env.UnitDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { removeAccount(t, user) })
	return env
}

// newRunner is a real runner over a journal in a temporary directory.
func newRunner(t *testing.T, env Env) (*step.Runner, *bytes.Buffer, string) {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	var out bytes.Buffer
	return &step.Runner{Journal: j, Undoers: Undoers(env), Out: &out}, &out, filepath.Join(dir, "journal.json")
}

// inNetns runs f on an OS thread that is in the network namespace ns: sockets f opens and
// processes it starts are there. The thread leaves the namespace afterwards, or dies.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave %s: %w", ns, err) // the locked thread exits with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// syncBuffer is a bytes.Buffer several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pidsInNetns are the processes in the network namespace whose link is ns ("net:[…]").
func pidsInNetns(ns string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "net")); err == nil && link == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
