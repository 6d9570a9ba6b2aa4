package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/emrkit/emrkit/internal/sftptest"
	"github.com/emrkit/emrkit/internal/testbin"
)

// vault is the offsite host (internal/sftptest), the restic repository in its directory.
// Each chroot reaches it on its own loopback: serve starts an sshd in that chroot's network
// namespace, over the same files.
type vault struct {
	t *testing.T
	*sftptest.Host
}

func newVault(t *testing.T) *vault { return &vault{t: t, Host: sftptest.New(t, 2222)} }

// repository is the restic repository's address as the chroots give it.
func (v *vault) repository() string {
	return fmt.Sprintf("sftp://root@127.0.0.1:%d/%s", v.Port, filepath.Join(v.Dir, "repo"))
}

// serve starts the vault's sshd in c's network namespace (the host's binary and files; a
// private mount namespace gives it /run/sshd), until the test ends.
func (v *vault) serve(c *chroot) {
	v.t.Helper()
	pid, err := os.ReadFile(filepath.Join(filepath.Dir(c.root), "."+filepath.Base(c.root)+".session"))
	must(v.t, err)
	cmd := exec.Command("nsenter", "--target", strings.TrimSpace(string(pid)), "--net", "--",
		"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o mode=0755 vault /run && mkdir -m 0755 /run/sshd && exec "$0" -D -e -f "$1"`, sftptest.Sshd, v.Config)
	log, err := os.Create(filepath.Join(v.Dir, fmt.Sprintf("sshd-%d.log", time.Now().UnixNano())))
	must(v.t, err)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(v.t, cmd.Start())
	v.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if v.t.Failed() {
			text, _ := os.ReadFile(log.Name())
			v.t.Logf("vault sshd log:\n%s", text)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, code := c.run("nc", "-z", "127.0.0.1", fmt.Sprint(v.Port)); code == 0 {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatal("the vault's sshd does not answer in the chroot")
		}
	}
}

// readmeBlocks are the ```sh blocks of the README section titled heading, in order.
func readmeBlocks(t *testing.T, heading string) [][]string {
	t.Helper()
	text := read(t, filepath.Join(testbin.RepoRoot(t), "README.md"))
	_, section, ok := strings.Cut(text, "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks [][]string
	for {
		_, rest, ok := strings.Cut(section, "```sh\n")
		if !ok {
			return blocks
		}
		block, after, _ := strings.Cut(rest, "```")
		blocks = append(blocks, strings.Split(strings.TrimSpace(block), "\n"))
		section = after
	}
}

// TestDisasterRecoveryFromOffsiteAlone follows the README: a clinic's host takes its nightly
// encrypted backup, which copies itself to the vault over SFTP, and makes the disaster kit with
// the README's command. Then a fresh host (MariaDB, Tomcat's OSCAR, no database), given only
// the kit, the package and a way to the vault, runs "Restoring after a disaster" line by line
// as written, and ends with the clinic's database and a doctor that finds the offsite copy.
func TestDisasterRecoveryFromOffsiteAlone(t *testing.T) {
	blocks := readmeBlocks(t, "Restoring after a disaster")
	if len(blocks) != 2 {
		t.Fatalf("README's disaster section has %d sh blocks, want 2 (the kit, the restore)", len(blocks))
	}
	deb := buildDeb(t)
	v := newVault(t)

	clinic := newChroot(t)
	clinic.oscarHost(chrootProps)
	clinic.putDeb(deb)
	clinic.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	v.serve(clinic)
	key, err := os.ReadFile(v.ClientKey)
	must(t, err)
	must(t, os.WriteFile(clinic.path("/etc/emrkit/offsite.key"), key, 0o600))
	must(t, os.WriteFile(clinic.path("/etc/emrkit/offsite.known_hosts"), []byte(v.KnownHost), 0o644))
	var cfg map[string]any
	must(t, yaml.Unmarshal([]byte(read(t, clinic.path("/etc/emrkit/emrkit.yaml"))), &cfg))
	b, _ := cfg["backup"].(map[string]any)
	if b == nil {
		b = map[string]any{}
	}
	b["offsite"] = map[string]any{"repository": v.repository(), "ssh_key": "/etc/emrkit/offsite.key", "known_hosts": "/etc/emrkit/offsite.known_hosts"}
	cfg["backup"] = b
	data, err := yaml.Marshal(cfg)
	must(t, err)
	must(t, os.WriteFile(clinic.path("/etc/emrkit/emrkit.yaml"), data, 0o600))
	clinic.mustRun("emrkit", "backup", "offsite", "init")
	if out, code := clinic.run("emrkit", "apply"); code != 0 && !chrootDeferredFirewallOnly(out, code) {
		t.Fatalf("apply with backup.offsite (exit %d):\n%s", code, out)
	}
	entry := clinic.mustRun("cat", "/etc/cron.d/emrkit-backup")
	if !strings.Contains(entry, "emrkit backup offsite check --alert") {
		t.Fatalf("the cron entry has no offsite check:\n%s", entry)
	}
	nightly := ""
	for _, l := range strings.Split(entry, "\n") {
		if _, cmd, ok := strings.Cut(l, "exit 0; "); ok && strings.Contains(cmd, "emrkit backup --encrypt") {
			nightly = cmd
		}
	}
	if nightly == "" {
		t.Fatalf("no encrypted nightly backup in the cron entry:\n%s", entry)
	}
	// OSCAR users whose 2FA the clinic's emrkit enrolled, their PINs cycled: oscardoc by the
	// plan (totp.users), nurse by hand.
	clinic.mustRun("emrkit", "2fa", "enroll", "nurse", "--no-qr")
	clinic.mustRun("emrkit", "2fa", "sync-pins")
	clinic.mustRun("sh", "-c", nightly)
	want := clinic.dbDump()
	for _, line := range blocks[0] {
		clinic.mustRun("sh", "-c", line)
	}
	kit, err := os.ReadFile(clinic.path("/root/emrkit-kit.tgz"))
	must(t, err)

	fresh := newChroot(t)
	fresh.mustRun("sh", "-c", startMariaDB)
	fresh.mustRun("useradd", "--system", "--home-dir", "/var/lib/tomcat9", "--create-home", "--shell", "/usr/sbin/nologin", "tomcat")
	must(t, os.MkdirAll(fresh.path("/usr/share/tomcat9"), 0o755))
	must(t, os.WriteFile(fresh.path("/usr/share/tomcat9/oscar.properties"), []byte(chrootProps), 0o640))
	must(t, os.WriteFile(fresh.path("/root/emrkit-kit.tgz"), kit, 0o600))
	pkg, err := os.ReadFile(deb)
	must(t, err)
	must(t, os.WriteFile(fresh.path("/root/"+filepath.Base(deb)), pkg, 0o644))
	v.serve(fresh)

	restored, firstBackup := false, ""
	for _, line := range blocks[1] {
		out, code := fresh.run("sh", "-c", "cd /root && "+line)
		t.Logf("$ %s (exit %d)\n%s", line, code, out)
		switch {
		case line == "emrkit doctor":
			for _, check := range []string{"a recent backup is kept off the server", "the offsite copies were proven readable", "the newest backup was proven to restore"} {
				if code != 0 && code != 3 || !strings.Contains(out, "PASS    "+check) {
					t.Fatalf("doctor after the runbook (exit %d) does not pass %q:\n%s", code, check, out)
				}
			}
		case line == "emrkit apply" && chrootDeferredFirewallOnly(out, code):
		case code != 0:
			t.Fatalf("the runbook's %q failed (exit %d):\n%s", line, code, out)
		case strings.HasPrefix(line, "emrkit restore "):
			if got := fresh.dbDump(); got != want {
				t.Fatalf("the restored database differs from the clinic's:\n%s", lineDiff(want, got))
			}
			restored = true
		case line == "emrkit backup --encrypt":
			firstBackup = filepath.Base(lastLine(out))
		}
	}
	if !restored {
		t.Fatal("the runbook restores nothing")
	}
	if got := fresh.mustRun("mariadb", "-N", "-B", "oscar_15", "-e", "CHECKSUM TABLE demographic"); got != clinic.mustRun("mariadb", "-N", "-B", "oscar_15", "-e", "CHECKSUM TABLE demographic") {
		t.Fatalf("after the whole runbook the patients differ from the clinic's: %s", got)
	}
	if list := fresh.mustRun("emrkit", "backup", "offsite", "list"); firstBackup == "" || !strings.Contains(list, firstBackup) {
		t.Fatalf("the vault does not hold the new server's first backup %q:\n%s", firstBackup, list)
	}
	// The new server's emrkit took both enrolments over (2fa adopt; oscardoc's replaces the
	// plan's entry that waited for the database): the cycle writes their PINs, and doctor
	// checks them.
	list := fresh.mustRun("emrkit", "2fa", "list")
	for _, user := range []string{"oscardoc", "nurse"} {
		if !regexp.MustCompile(user + `\s+yes\s+yes`).MatchString(list) {
			t.Fatalf("after the runbook %s is not emrkit's enrolment:\n%s", user, list)
		}
	}
	fresh.mustRun("emrkit", "2fa", "sync-pins")
	if out, _ := fresh.run("emrkit", "doctor"); !strings.Contains(out, "2 enrolled users' PINs are current") {
		t.Fatalf("after the runbook and a PIN cycle doctor does not find both PINs current:\n%s", out)
	}
}

// chrootDeferredFirewallOnly reports whether an apply that exited 3 deferred nothing but the
// firewall, which emrkit never touches from a chroot (README: Decisions).
func chrootDeferredFirewallOnly(out string, code int) bool {
	if code != 3 {
		return false
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "deferred") && !strings.Contains(l, "firewall") && !strings.HasPrefix(l, "NOTE: ") {
			return false
		}
	}
	return true
}

// lastLine is the last non-blank line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
