// Package pgptest gives the PGP tests real parts: a throwaway system user standing in for
// Tomcat, directories that user can traverse, root-side gpg homes, OSCAR's exact call, and a
// watcher that records every process's argv and environment while a test runs, to prove no
// passphrase ever appears there.
package pgptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/pgp"
)

// RequireTools fails (never skips) when a tool the tests run is missing, or when not root.
func RequireTools(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the PGP tests run as root: they create a throwaway system user and run gpg as it")
	}
	for _, p := range []string{"/usr/bin/gpg", "/usr/bin/gpgconf", "/usr/bin/pgpgpg", "/usr/sbin/useradd", "/usr/sbin/userdel"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing; run scripts/deps.sh (gnupg, pgpgpg, passwd)", p)
		}
	}
}

// Dir makes a temporary directory others can traverse (0755), so the stand-in user reaches
// what the test puts in it. It is removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "emrkit-pgp-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// User creates a throwaway system user (own group, no login, home given but not created)
// standing in for Tomcat, and deletes it when the test ends, leaving /etc/passwd as found.
func User(t testing.TB, home string) pgp.Account {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "emrkit-t-" + hex.EncodeToString(b)
	out, err := exec.Command("/usr/sbin/useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", home, "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("/usr/sbin/userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	a, err := pgp.LookupAccount(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// StopAgents stops the gpg-agent of each home (as acct when given), now and when the test
// ends, so no agent outlives the test.
func StopAgents(t testing.TB, acct *pgp.Account, homes ...string) {
	t.Helper()
	stop := func() {
		for _, h := range homes {
			pgp.GPG{Conf: "/usr/bin/gpgconf", Home: h, Account: acct}.StopAgent(context.Background())
		}
	}
	t.Cleanup(stop)
}

// GPG runs the real gpg as root on home with a fixed, terminal-free argv.
func GPG(t testing.TB, home string, stdin io.Reader, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("/usr/bin/gpg", append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
	cmd.Env = []string{"GNUPGHOME=" + home, "PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.Stdin = stdin
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.Bytes()
}

// RootHome makes a root-only gpg home whose agent is stopped when the test ends.
func RootHome(t testing.TB, parent, name string) string {
	t.Helper()
	home := filepath.Join(parent, name)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	StopAgents(t, nil, home)
	return home
}

// OSCARCall runs argv the way OSCAR's PGPEncrypt does: env as the whole environment, dir as
// the working directory, as acct, without a terminal. It returns the combined output.
func OSCARCall(acct pgp.Account, dir string, env string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{env}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true,
		Credential: &syscall.Credential{Uid: uint32(acct.UID), Gid: uint32(acct.GID), Groups: acct.Groups}}
	return cmd.CombinedOutput()
}

// OSCARCallSandboxed is OSCARCall as Debian's Tomcat unit runs it (ProtectSystem=strict):
// readOnly (the GnuPG home) is read-only, in a mount namespace of the call's own.
func OSCARCallSandboxed(acct pgp.Account, dir, readOnly, env string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"`
	args := []string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", readOnly,
		"/usr/bin/setpriv", "--reuid", strconv.Itoa(acct.UID), "--regid", strconv.Itoa(acct.GID), "--init-groups",
		"/usr/bin/env", "-i", env}
	cmd := exec.CommandContext(ctx, "/usr/bin/unshare", append(args, argv...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd.CombinedOutput()
}

// ExportDir makes an export directory owned by acct with a file of size random bytes in
// it, as OSCAR leaves an export before encrypting it; it returns the file's name and content.
func ExportDir(t testing.TB, parent string, acct pgp.Account, size int) (dir, name string, content []byte) {
	t.Helper()
	dir = filepath.Join(parent, "export")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, acct.UID, acct.GID); err != nil {
		t.Fatal(err)
	}
	name = "export_set1_20190516143152.zip"
	content = make([]byte, size)
	rand.Read(content)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, acct.UID, acct.GID); err != nil {
		t.Fatal(err)
	}
	return dir, name, content
}

// CopyExecutable copies the running test binary to dst (0755), where the stand-in user can
// run it: TestMain turns it into `emrkit oscar-encrypt`.
func CopyExecutable(t testing.TB, dst string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Watch records the argv of every process on the host while a test runs, and the
// environment of the test's own children and of the stand-in user's processes (other
// processes' environments are none of its business).
type Watch struct {
	uids map[int]bool
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen map[string]bool // "argv\x00environ" of each process seen
}

// WatchProcs starts recording; Stop ends it. uids are the accounts whose processes'
// environments are read too.
func WatchProcs(uids ...int) *Watch {
	w := &Watch{uids: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	for _, u := range uids {
		w.uids[u] = true
	}
	go w.loop()
	return w
}

// ours reports whether pid is a child of this process or runs as a watched uid.
func (w *Watch) ours(proc string, self int) bool {
	fi, err := os.Stat(proc)
	if err != nil {
		return false
	}
	if w.uids[int(fi.Sys().(*syscall.Stat_t).Uid)] {
		return true
	}
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ppid ...; comm may hold spaces, so read after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(stat[i+1:]))
	return len(f) > 1 && f[1] == strconv.Itoa(self)
}

func (w *Watch) loop() {
	defer close(w.done)
	self := os.Getpid()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		pids, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range pids {
			if filepath.Base(p) == fmt.Sprint(self) {
				continue // this test process holds the secrets it checks for in memory only
			}
			argv, err := os.ReadFile(p + "/cmdline")
			if err != nil || len(argv) == 0 {
				continue
			}
			var env []byte
			if w.ours(p, self) {
				env, _ = os.ReadFile(p + "/environ")
			}
			key := string(bytes.ReplaceAll(argv, []byte{0}, []byte{' '})) + "\x00" + string(env)
			w.mu.Lock()
			w.seen[key] = true
			w.mu.Unlock()
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// Stop ends recording and returns the distinct argv lines seen.
func (w *Watch) Stop() []string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k := range w.seen {
		argv, _, _ := strings.Cut(k, "\x00")
		out = append(out, argv)
	}
	return out
}

// Leaks stops recording and returns the argv of each process whose argv or environment
// held one of the secrets, and the distinct argv lines seen.
func (w *Watch) Leaks(secrets [][]byte) (leaks, seen []string) {
	seen = w.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.seen {
		for _, s := range secrets {
			if s = bytes.TrimSpace(s); len(s) > 0 && strings.Contains(k, string(s)) {
				argv, _, _ := strings.Cut(k, "\x00")
				leaks = append(leaks, argv)
			}
		}
	}
	return leaks, seen
}

// Check fails t when any recorded argv or environment holds a secret, and when none of the
// programs in mustSee was caught running (the watch would then prove nothing).
func (w *Watch) Check(t testing.TB, secrets [][]byte, mustSee ...string) {
	t.Helper()
	leaks, seen := w.Leaks(secrets)
	for _, l := range leaks {
		t.Errorf("a passphrase appears in the argv or environment of %q", l)
	}
	for _, m := range mustSee {
		found := false
		for _, a := range seen {
			if strings.Contains(a, m) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("the process watch never saw %q running (%d argvs seen); it cannot vouch for it", m, len(seen))
		}
	}
}

// NoSecretReadable fails t when a file under root holds a secret while others (or, for a
// 0640 file, anyone but root and group gid) can read it.
func NoSecretReadable(t testing.TB, secrets [][]byte, gid int, roots ...string) {
	t.Helper()
	for _, root := range roots {
		filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			for _, s := range secrets {
				if len(bytes.TrimSpace(s)) == 0 || !bytes.Contains(data, bytes.TrimSpace(s)) {
					continue
				}
				st := fi.Sys().(*syscall.Stat_t)
				perm := fi.Mode().Perm()
				ok := st.Uid == 0 && (perm&0o077 == 0 || (perm&0o007 == 0 && perm&0o020 == 0 && int(st.Gid) == gid))
				if !ok {
					t.Errorf("%s holds a passphrase and is %v uid %d gid %d", path, perm, st.Uid, st.Gid)
				}
			}
			return nil
		})
	}
}
