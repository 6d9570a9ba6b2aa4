package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Exec runs argv (argv[0] an absolute path) with exactly env and returns what it printed.
// A non-nil error with output is a failed command; *exec.Error or fs.ErrNotExist means the
// program is missing.
type Exec func(ctx context.Context, argv, env []string) (stdout, stderr []byte, err error)

// RunProcess is the real Exec: no shell, no inherited environment, stdin from /dev/null (ufw
// never waits on a prompt).
func RunProcess(ctx context.Context, argv, env []string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}

// toolEnv is the whole environment of every command emrkit runs here: C messages so output
// parses the same everywhere, and a fixed PATH for the helpers ufw calls.
var toolEnv = []string{"LC_ALL=C", "LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// ErrNotInstalled is returned when the ufw program is missing.
var ErrNotInstalled = errors.New("ufw not installed; apt install ufw")

// UFW runs ufw's command line.
type UFW struct {
	// Path is the ufw program, /usr/sbin/ufw.
	Path string
	// Exec runs it; nil runs the real process. Tests of output parsing inject canned output;
	// everything that changes the firewall is tested against the real ufw in a namespace.
	Exec Exec
	// reads, when set, keeps what ufw's read-only commands printed (DefaultEnv sets it).
	reads *readCache
}

// readOnly are the ufw commands whose output a readCache keeps.
var readOnly = map[string]bool{"status": true, "show added": true}

// Installed reports ErrNotInstalled when the program is missing.
func (u UFW) Installed() error {
	if u.Exec != nil {
		return nil
	}
	if _, err := os.Stat(u.Path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (no %s)", ErrNotInstalled, u.Path)
	} else if err != nil {
		return fmt.Errorf("ufw: %w", err)
	}
	return nil
}

// Run runs ufw with args and returns its standard output. A failure carries ufw's own
// message and, when iptables is what failed, says so.
func (u UFW) Run(ctx context.Context, args ...string) (string, error) {
	if u.reads == nil {
		return u.run(ctx, args...)
	}
	return u.reads.run(ctx, args, u.run)
}

func (u UFW) run(ctx context.Context, args ...string) (string, error) {
	if err := u.Installed(); err != nil {
		return "", err
	}
	run := u.Exec
	if run == nil {
		run = RunProcess
	}
	stdout, stderr, err := run(ctx, append([]string{u.Path}, args...), toolEnv)
	if err == nil {
		return string(stdout), nil
	}
	var ee *exec.Error
	if errors.As(err, &ee) || errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w (%v)", ErrNotInstalled, err)
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("ufw %s: %w", strings.Join(args, " "), ctx.Err())
	}
	msg := strings.TrimSpace(string(stderr))
	if msg == "" {
		msg = strings.TrimSpace(string(stdout))
	}
	msg = strings.Join(strings.Fields(msg), " ")
	hint := ""
	if strings.Contains(strings.ToLower(msg), "iptables") {
		hint = "; iptables is not usable on this host (check that iptables is installed and works, " +
			"that the kernel provides netfilter/nf_tables and, in a container, that it has CAP_NET_ADMIN)"
	}
	return "", fmt.Errorf("ufw %s failed (%v): %s%s", strings.Join(args, " "), err, msg, hint)
}

// ufwCommand renders "ufw ARGS" with the comment quoted as ufw prints it.
func ufwCommand(args ...string) string {
	out := make([]string, 0, len(args)+1)
	out = append(out, "ufw")
	for i, a := range args {
		if i > 0 && args[i-1] == "comment" {
			a = "'" + a + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}
