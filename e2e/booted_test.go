package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/testbin"
)

// box is a Debian 12 root booted under systemd-nspawn: systemd 252 as its PID 1, with
// journald, dbus, Restart= and sandboxing real (../shared/systemd-nspawn.md). It has only a
// loopback interface, and a cgroup directory of its own so two boxes never share a unit's
// cgroup. Commands run inside with every one of its namespaces entered.
type box struct {
	t          *testing.T
	root, name string
	cgroups    []string
	console    string
	nspawn     *exec.Cmd
	exited     chan error
	leader     int
}

// newBox unpacks a fresh root from the cached booted image and boots it.
func newBox(t *testing.T) *box {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the booted-system tests need root (systemd-nspawn, cgroups); run `make test` as root")
	}
	script := filepath.Join(testbin.RepoRoot(t), "scripts", "chroot.sh")
	out, err := exec.Command("sh", script, "boot-image", "-").Output()
	if err != nil {
		t.Fatalf("chroot.sh boot-image: %v", err)
	}
	image := strings.TrimSpace(string(out))
	dir := t.TempDir()
	b := &box{t: t, root: filepath.Join(dir, "root"), name: fmt.Sprintf("emrkit-box-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6),
		console: filepath.Join(dir, "console.log")}
	must(t, os.Mkdir(b.root, 0o755))
	if out, err := exec.Command("tar", "-C", b.root, "--numeric-owner", "-xzf", image).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", image, err, out)
	}
	id, err := exec.Command("systemd-id128", "new").Output()
	must(t, err)
	must(t, os.WriteFile(b.path("/etc/machine-id"), id, 0o444))
	for _, h := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(h); err == nil {
			d := filepath.Join(h, b.name)
			must(t, os.Mkdir(d, 0o755))
			b.cgroups = append(b.cgroups, d)
		}
	}
	if len(b.cgroups) == 0 {
		b.cgroups = []string{filepath.Join("/sys/fs/cgroup", b.name)} // a pure cgroup2 host
		must(t, os.Mkdir(b.cgroups[0], 0o755))
	}
	t.Cleanup(b.destroy)
	b.boot()
	return b
}

// boot starts nspawn on the root and waits until systemd says the system is up.
func (b *box) boot() {
	b.t.Helper()
	// The shell moves itself into the box's cgroups, then becomes nspawn, which splits them.
	var moves strings.Builder
	for _, d := range b.cgroups {
		fmt.Fprintf(&moves, "echo $$ > %s/cgroup.procs && ", d)
	}
	console, err := os.OpenFile(b.console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(b.t, err)
	defer console.Close()
	b.nspawn = exec.Command("sh", "-c", moves.String()+`exec systemd-nspawn --quiet --boot --register=no --keep-unit --private-network --settings=no `+
		`--link-journal=no --console=read-only --machine="$0" -D "$1"`, b.name, b.root)
	b.nspawn.Stdout, b.nspawn.Stderr = console, console
	b.nspawn.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	must(b.t, b.nspawn.Start())
	b.exited = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(b.nspawn, b.exited)
	deadline := time.Now().Add(60 * time.Second)
	for b.leader = 0; b.leader == 0; {
		if out, err := exec.Command("pgrep", "-P", strconv.Itoa(b.nspawn.Process.Pid), "-x", "systemd").Output(); err == nil {
			b.leader, _ = strconv.Atoi(strings.Fields(string(out))[0])
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the box's systemd did not start:\n%s", b.consoleTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		st, _ := b.run("systemctl", "is-system-running", "--wait")
		st = strings.TrimSpace(st)
		if st == "running" {
			return
		}
		if st == "degraded" {
			failed, _ := b.run("systemctl", "--failed", "--no-legend")
			b.t.Fatalf("the box booted degraded:\n%s", failed)
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the box did not finish booting (%q):\n%s", st, b.consoleTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *box) consoleTail() string {
	data, _ := os.ReadFile(b.console)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// path is p inside the box's root, for files written in before boot or read from outside.
// Use /root or /var/tmp for files the box must see: systemd mounts a tmpfs on its /tmp.
func (b *box) path(p string) string { return filepath.Join(b.root, p) }

// run runs argv inside the box (all of its namespaces) with a clean environment.
func (b *box) run(argv ...string) (string, int) {
	b.t.Helper()
	args := append([]string{"-t", strconv.Itoa(b.leader), "-a", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}, argv...)
	cmd := exec.Command("nsenter", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		b.t.Fatalf("nsenter: %v", err)
	}
	return out.String(), 0
}

func (b *box) mustRun(argv ...string) string {
	b.t.Helper()
	out, code := b.run(argv...)
	if code != 0 {
		b.t.Fatalf("%v in the box exited %d:\n%s", argv, code, out)
	}
	return out
}

// waitFor polls cond every 0.2 s until it holds or timeout passes, and reports how long it took.
func (b *box) waitFor(timeout time.Duration, what string, cond func() bool) time.Duration {
	b.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			b.t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

// reboot reboots the box: nspawn exits 133 and is started again on the same root.
func (b *box) reboot() {
	b.t.Helper()
	b.run("systemctl", "reboot")
	select {
	case err := <-b.exited:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 133 {
			b.t.Fatalf("nspawn after reboot: %v, want exit status 133", err)
		}
	case <-time.After(60 * time.Second):
		b.t.Fatal("the box did not go down for its reboot within 60 s")
	}
	b.nspawn = nil
	b.boot()
}

// destroy halts the box (SIGTERM to nspawn halts it cleanly), then removes its cgroups and root.
func (b *box) destroy() {
	if b.nspawn != nil {
		b.nspawn.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(60 * time.Second):
			b.nspawn.Process.Kill()
			<-b.exited
		}
	}
	for _, d := range b.cgroups {
		// The kernel ended every process of the box with its PID 1; what nspawn leaves is
		// empty directories (payload/..., supervisor), removed deepest first.
		var dirs []string
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				b.t.Errorf("remove the box's cgroup %s: %v", dirs[i], err)
			}
		}
	}
	if out, err := exec.Command("rm", "-rf", "--one-file-system", b.root).CombinedOutput(); err != nil {
		b.t.Errorf("remove the box's root: %v\n%s", err, out)
	}
}
