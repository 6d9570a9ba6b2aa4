// Package sftptest is the offsite host of emrkit's tests: the files of a real sshd that serves
// SFTP (internal-sftp) to root on 127.0.0.1 with one authorised key — its host key, the
// client's key, its sshd_config and the known_hosts line a client needs. Where and how that
// sshd runs (a network namespace of the test's own) is the caller's.
package sftptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Host is the offsite host's files, all in Dir.
type Host struct {
	Dir string
	// Config is sshd's configuration (sshd -f Config); Port is where it listens.
	Config string
	Port   int
	// ClientKey is the private key root logs in with; KnownHost the host's known_hosts line.
	ClientKey, KnownHost string
}

// Sshd is Debian's sshd, which the tests run.
const Sshd = "/usr/sbin/sshd"

// New writes a host listening on 127.0.0.1:port into a directory of the test's.
func New(t testing.TB, port int) *Host {
	t.Helper()
	for _, tool := range []string{"ssh-keygen", Sshd} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the offsite host needs %s (scripts/deps.sh installs openssh-server and openssh-client)", tool)
		}
	}
	dir := t.TempDir()
	h := &Host{Dir: dir, Config: filepath.Join(dir, "sshd_config"), Port: port, ClientKey: filepath.Join(dir, "client")}
	for _, k := range []string{"hostkey", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k, "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(h.ClientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile(filepath.Join(dir, "hostkey.pub"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(host))
	h.KnownHost = fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, f[0], f[1])
	// StrictModes off: the test's directories are not laid out as a home directory.
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/hostkey
PidFile none
AuthorizedKeysFile %[2]s/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, port, dir)
	if err := os.WriteFile(h.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}
