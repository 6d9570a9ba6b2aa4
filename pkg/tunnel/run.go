package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// toolEnv is the whole environment of every program the steps run: C messages so output
// parses the same everywhere, a fixed PATH, and no SSH_AUTH_SOCK or HOME of the caller's.
var toolEnv = []string{"LC_ALL=C", "LANG=C", "TZ=UTC", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// result is what a program printed and how it ended.
type result struct {
	stdout, stderr string
	code           int // exit status; -1 when it did not exit by itself
}

// run runs argv (no shell, stdin /dev/null) as the account (nil: as this process) and
// returns an error naming the program and the last line it printed when it fails.
func run(ctx context.Context, as *account, argv ...string) (result, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = toolEnv
	cmd.WaitDelay = 5 * time.Second
	if as != nil {
		cmd.SysProcAttr = as.credential()
		cmd.Dir = "/"
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		msg := lastLine(r.stderr)
		if msg == "" {
			msg = lastLine(r.stdout)
		}
		if msg != "" {
			msg = ": " + msg
		}
		return r, fmt.Errorf("%s %s: %w%s", filepath.Base(argv[0]), strings.Join(argv[1:], " "), err, msg)
	}
	return r, nil
}

// lastLine is the last non-blank line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// account is a Unix account the tunnel's programs run as.
type account struct {
	Name     string
	UID, GID int
	Groups   []uint32
	Home     string
	Shell    string
}

// errNoAccount means the account does not exist.
var errNoAccount = errors.New("no such account")

// lookupAccount reads name from the user database; errNoAccount when it is absent.
func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return nil, errNoAccount
	}
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: non-numeric uid/gid: %w", name, err)
	}
	a := &account{Name: name, UID: uid, GID: gid, Home: u.HomeDir, Shell: passwdShell(name)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.Groups = append(a.Groups, uint32(g))
			}
		}
	}
	return a, nil
}

// passwdShell is name's login shell in /etc/passwd ("" when it is not there).
func passwdShell(name string) string {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			return f[6]
		}
	}
	return ""
}

// credential makes a process run as the account, as systemd's User=/Group= would.
func (a *account) credential() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID), Groups: a.Groups}}
}

// tunnelPIDs are the processes of uid that run exactly argv: the tunnel, started by systemd
// or by hand with ExecStart. procRoot is /proc.
func tunnelPIDs(procRoot string, uid int, argv []string) []int {
	return pids(procRoot, func(dir string, real, _ string) bool {
		if real != strconv.Itoa(uid) {
			return false
		}
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		return err == nil && slices.Equal(strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), argv)
	})
}

// uidPIDs are the processes whose real or effective uid is uid.
func uidPIDs(procRoot string, uid int) []int {
	u := strconv.Itoa(uid)
	return pids(procRoot, func(_ string, real, effective string) bool { return real == u || effective == u })
}

// pids are the processes under procRoot that match says yes to, given the process's
// directory and its real and effective uid (the "Uid:" line of its status file).
func pids(procRoot string, match func(dir, real, effective string) bool) []int {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		status, err := os.ReadFile(filepath.Join(dir, "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" && match(dir, f[1], f[2]) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// processStart is when pid started, from its start time in clock ticks after boot
// (proc_pid_stat(5)) and the boot time (btime in /proc/stat).
func processStart(procRoot string, pid int) (time.Time, error) {
	stat, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return time.Time{}, err
	}
	// The command name may hold blanks and parentheses: fields count from the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("unreadable %s/%d/stat", procRoot, pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return time.Time{}, fmt.Errorf("unreadable %s/%d/stat", procRoot, pid)
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return time.Time{}, err
	}
	all, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(all), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "btime" {
			btime, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			const hz = 100 // USER_HZ on every Linux architecture Debian ships
			return time.Unix(btime, 0).Add(time.Duration(ticks) * time.Second / hz), nil
		}
	}
	return time.Time{}, fmt.Errorf("no btime in %s/stat", procRoot)
}
