package e2e

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/openemrfixture"
)

const (
	tunnelUnit  = "emrkit-portal-tunnel.service"
	replicaUnit = "emrkit-portal-replica.service"
)

// openemrHost makes the booted box an OpenEMR host whose database (served by the box's own
// mariadb.service) also holds the portal's tables.
func (b *box) openemrHost() {
	b.t.Helper()
	sql := "CREATE DATABASE openemr;\nUSE openemr;\n" + openemrfixture.GlobalsSQL + openemrfixture.UsersSQL(7) + openemrfixture.PortalSQL
	must(b.t, os.WriteFile(b.path("/root/openemr.sql"), []byte(sql), 0o600))
	b.mustRun("sh", "-c", "mariadb </root/openemr.sql")
	must(b.t, (openemrfixture.Tree{Major: 7, Database: "openemr", UID: 33, GID: 33}).Write(b.path("/var/www/openemr")))
}

// unitProp is one property of a unit as the box's systemd has it.
func (b *box) unitProp(unit, prop string) string {
	b.t.Helper()
	out, _ := b.run("systemctl", "show", "-P", prop, unit)
	return strings.TrimSpace(out)
}

// killAndWait kills the unit's main process with SIGKILL, runs meanwhile, and waits until
// systemd has the unit active again under a new main process and up holds.
func (b *box) killAndWait(unit string, meanwhile func(), up func() bool) time.Duration {
	b.t.Helper()
	pid := b.unitProp(unit, "MainPID")
	b.mustRun("kill", "-9", pid)
	meanwhile()
	return b.waitFor(30*time.Second, unit+" back after kill -9 of pid "+pid, func() bool {
		p := b.unitProp(unit, "MainPID")
		return p != pid && p != "0" && b.unitProp(unit, "ActiveState") == "active" && up()
	})
}

var exposureRE = regexp.MustCompile(`(?m)Overall exposure level for \S+: (\d+\.\d+)`)

// exposure is systemd-analyze security's score of the unit the box's systemd has loaded.
func (b *box) exposure(unit string) float64 {
	b.t.Helper()
	out, _ := b.run("systemd-analyze", "security", "--no-pager", unit)
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		b.t.Fatalf("systemd-analyze security %s printed no score:\n%s", unit, out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	must(b.t, err)
	return v
}

// TestBootedPortalTunnel: on a Debian 12 booted under real systemd, a preseeded install
// with the portal and its replica on (the portal's end being the box's own sshd) brings the
// tunnel unit up once the portal holds its key, with the forward answering at the portal's
// end; after MariaDB's restart and an apply the replica unit replicates the portal's rows;
// each unit comes back after kill -9 of its main process and after a reboot, the replica
// still replicating; each unit's exposure is at most 1.5; purge leaves no unit file or link,
// no process, no system user, no datadir and no loaded unit; the journal holds no line of
// the tunnel's private key.
func TestBootedPortalTunnel(t *testing.T) {
	deb := buildDeb(t)
	b := newBox(t)
	b.openemrHost()
	debData, err := os.ReadFile(deb)
	must(t, err)
	must(t, os.WriteFile(b.path("/root/emrkit.deb"), debData, 0o644))
	hostKey := strings.Fields(b.mustRun("cat", "/etc/ssh/ssh_host_ed25519_key.pub"))
	preseed := openemrPreseed + "emrkit emrkit/portal boolean true\n" +
		"emrkit emrkit/portal-host string 127.0.0.1:22\n" +
		"emrkit emrkit/portal-user string tunnel-clinic1\n" +
		"emrkit emrkit/portal-host-key string " + hostKey[0] + " " + hostKey[1] + "\n" +
		"emrkit emrkit/portal-replica boolean true\n"
	must(t, os.WriteFile(b.path("/root/preseed"), []byte(preseed), 0o644))
	b.mustRun("debconf-set-selections", "/root/preseed")
	// What the forward reaches at the clinic's end: Apache on 443 (plain HTTP: the box has no
	// certificate; any HTTP answer shows the forward carries it).
	must(t, os.WriteFile(b.path("/etc/apache2/conf-enabled/test-listen-443.conf"), []byte("Listen 443\n"), 0o644))
	b.mustRun("systemctl", "restart", "apache2")
	// The portal's end: its account, whose authorized_keys gets the line emrkit prints.
	b.mustRun("useradd", "--create-home", "--shell", "/bin/sh", "tunnel-clinic1")

	t.Logf("dpkg -i:\n%s", b.mustRun("dpkg", "-i", "/root/emrkit.deb"))
	line := strings.TrimSpace(b.mustRun("emrkit", "portal", "authorized-key"))
	if !authorizedKeyRE.MatchString(line) {
		t.Fatalf("authorized-key printed %q", line)
	}
	b.mustRun("install", "-d", "-m", "0700", "-o", "tunnel-clinic1", "/home/tunnel-clinic1/.ssh")
	must(t, os.WriteFile(b.path("/home/tunnel-clinic1/.ssh/authorized_keys"), []byte(line+"\n"), 0o600))
	b.mustRun("chown", "tunnel-clinic1", "/home/tunnel-clinic1/.ssh/authorized_keys")

	// The unit's first connects were refused (no key at the portal yet): it retries after
	// RestartSec, and the forward then brings Apache's answer to the portal's end.
	forwardAnswers := func() bool {
		out, _ := b.run("sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | timeout 3 nc -w2 127.0.0.1 18443 | head -c 200`)
		return strings.HasPrefix(out, "HTTP/1.1 ")
	}
	took := b.waitFor(30*time.Second, "the tunnel's forward answering at the portal's end", forwardAnswers)
	t.Logf("forward answered %.1f s after the key was authorized", took.Seconds())
	if st := b.unitProp(tunnelUnit, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s", tunnelUnit, st)
	}

	// The replica waits for the binary log, which MariaDB opens when it restarts.
	b.mustRun("systemctl", "restart", "mariadb")
	t.Logf("apply after the restart:\n%s", b.mustRun("emrkit", "apply"))
	replicates := func(n int) func() bool {
		return func() bool {
			out, _ := b.run("mariadb", "--socket=/run/emrkit-portal-replica/mysqld.sock", "-N", "-B", "-e",
				"SELECT COUNT(*) FROM openemr.patient_access_onsite")
			return strings.TrimSpace(out) == strconv.Itoa(n)
		}
	}
	count := func() int {
		n, err := strconv.Atoi(strings.TrimSpace(b.mustRun("mariadb", "-N", "-B", "-e", "SELECT COUNT(*) FROM openemr.patient_access_onsite")))
		must(t, err)
		return n
	}
	rows := count()
	b.waitFor(30*time.Second, "the replica holding the portal's rows", replicates(rows))
	insert := func() {
		b.mustRun("mariadb", "-e", "INSERT INTO openemr.patient_access_onsite (pid, portal_username) VALUES ((SELECT COALESCE(MAX(pid),0)+1 FROM openemr.patient_access_onsite AS p), 'booted')")
		rows++
	}
	insert()
	b.waitFor(30*time.Second, "a new portal row on the replica", replicates(rows))
	// The row is written while the replica is down: it catches up once back.
	took = b.killAndWait(replicaUnit, insert, func() bool { return true })
	t.Logf("replica back %.1f s after kill -9 of its mariadbd", took.Seconds())
	b.waitFor(30*time.Second, "a portal row written while the replica was down", replicates(rows))

	took = b.killAndWait(tunnelUnit, func() {}, forwardAnswers)
	t.Logf("tunnel back %.1f s after kill -9 of its ssh", took.Seconds())

	b.reboot()
	took = b.waitFor(30*time.Second, "the tunnel after a reboot", func() bool {
		return b.unitProp(tunnelUnit, "ActiveState") == "active" && forwardAnswers()
	})
	t.Logf("tunnel answering %.1f s after the box was up again", took.Seconds())

	b.waitFor(30*time.Second, "the replica after a reboot", func() bool { return b.unitProp(replicaUnit, "ActiveState") == "active" })
	insert()
	b.waitFor(30*time.Second, "a portal row replicated after the reboot", replicates(rows))
	for _, u := range []string{tunnelUnit, replicaUnit} {
		if v := b.exposure(u); v > 1.5 {
			t.Errorf("%s exposure %.1f, want at most 1.5", u, v)
		} else {
			t.Logf("%s exposure %.1f", u, v)
		}
	}

	key := b.mustRun("cat", "/var/lib/emrkit-tunnel/id_ed25519")
	t.Logf("dpkg --purge:\n%s", b.mustRun("dpkg", "--purge", "emrkit"))
	if st := b.unitProp(tunnelUnit, "LoadState"); st != "not-found" {
		t.Errorf("after purge %s is %s, want not-found", tunnelUnit, st)
	}
	if st := b.unitProp(replicaUnit, "LoadState"); st != "not-found" {
		t.Errorf("after purge %s is %s, want not-found", replicaUnit, st)
	}
	for _, p := range []string{"/etc/systemd/system/" + tunnelUnit, "/etc/systemd/system/multi-user.target.wants/" + tunnelUnit, "/var/lib/emrkit-tunnel",
		"/etc/systemd/system/" + replicaUnit, "/etc/systemd/system/multi-user.target.wants/" + replicaUnit, "/var/lib/emrkit-portal-replica"} {
		if _, err := os.Lstat(b.path(p)); err == nil {
			t.Errorf("%s survived purge", p)
		}
	}
	if _, code := b.run("getent", "passwd", "emrkit-tunnel"); code == 0 {
		t.Error("the tunnel's system user survived purge")
	}
	if out, code := b.run("pgrep", "-a", "-f", "emrkit-tunnel|emrkit-portal"); code == 0 {
		t.Errorf("processes left after purge:\n%s", out)
	}
	journal := b.mustRun("journalctl", "--no-pager", "-o", "cat")
	for _, l := range strings.Split(key, "\n") {
		l = strings.TrimSpace(l)
		if len(l) > 20 && !strings.HasPrefix(l, "-----") && strings.Contains(journal, l) {
			t.Errorf("the journal holds a line of the tunnel's private key")
		}
	}
}
