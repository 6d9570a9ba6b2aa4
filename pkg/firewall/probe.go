package firewall

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// This file gathers what the host says, with the commands and files named in Env, for the
// pure decisions in ssh.go and for the chroot guard.

// GatherSSH runs `sshd -T` and `ss -Hltnp` and reads the session's SSH_CONNECTION. A command
// that is missing or fails contributes nothing: the other sources may still find the port,
// and DetectSSH refuses when none does for a remote session.
func (e Env) GatherSSH(ctx context.Context, configured int) SSHInputs {
	in := SSHInputs{Configured: configured, Connection: e.getenv("SSH_CONNECTION")}
	if configured == 0 {
		in.SSHDConfig = e.output(ctx, e.SSHD, "-T")
		in.Listening = e.output(ctx, e.SS, "-Hltnp")
	}
	if e.ProcRoot != "" {
		under, conn := sessionFromAncestors(e.ProcRoot, os.Getpid())
		in.UnderSSHD = under
		if in.Connection == "" {
			in.Connection = conn
		}
	}
	return in
}

// output runs a read-only probe and returns its stdout, or "" when it is missing or fails.
func (e Env) output(ctx context.Context, path string, args ...string) string {
	if path == "" {
		return ""
	}
	if _, err := os.Stat(path); err != nil && e.Exec == nil {
		return ""
	}
	out, _, err := e.exec()(ctx, append([]string{path}, args...), toolEnv)
	if err != nil {
		return ""
	}
	return string(out)
}

// sessionFromAncestors walks the process tree up from pid: whether an ancestor is an SSH
// server (the session is remote) and the nearest SSH_CONNECTION in an ancestor's environment.
func sessionFromAncestors(procRoot string, pid int) (underSSHD bool, connection string) {
	for i := 0; i < 64 && pid > 1; i++ {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		if connection == "" {
			if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil {
				for _, kv := range bytes.Split(env, []byte{0}) {
					if v, ok := bytes.CutPrefix(kv, []byte("SSH_CONNECTION=")); ok {
						connection = string(v)
						break
					}
				}
			}
		}
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		switch strings.TrimSpace(string(comm)) {
		case "sshd", "sshd-session", "dropbear":
			return true, connection
		}
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			break
		}
		next, ok := parentPID(string(stat))
		if !ok {
			break
		}
		pid = next
	}
	return false, connection
}

// parentPID reads the ppid from /proc/PID/stat, "pid (comm) state ppid ...", where comm may
// contain spaces and parentheses.
func parentPID(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}
