package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/openemrfixture"
	"github.com/emrkit/emrkit/pkg/replica"
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

// portalChecks are doctor's portal checks and the safeguard each maps to.
var portalChecks = map[string]string{
	"portal.db-grants": "164.312(a)(1)", "portal.binlog": "164.312(e)(1)", "portal.replication-grants": "164.312(a)(1)",
	"portal.replica": "164.312(e)(1)", "portal.replica-filter": "164.312(a)(1)", "portal.tunnel": "164.312(e)(1)",
	"portal.tunnel-key": "164.312(a)(1)",
}

// doctorReport runs `emrkit doctor --json` in the box and returns its portal checks by id.
func (b *box) doctorReport() map[string]doctorCheck {
	b.t.Helper()
	out, _ := b.run("emrkit", "doctor", "--json")
	var rep struct{ Checks []doctorCheck }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		b.t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	got := map[string]doctorCheck{}
	for _, c := range rep.Checks {
		if _, ok := portalChecks[c.ID]; ok {
			got[c.ID] = c
		}
	}
	if len(got) != len(portalChecks) {
		b.t.Fatalf("doctor reports %d of the %d portal checks:\n%s", len(got), len(portalChecks), out)
	}
	return got
}

type doctorCheck struct{ ID, Status, Finding, Fix, Safeguard string }

// doctorPortal: with the portal healthy every portal check passes; a grant added to the
// portal's account, replication stopped and the tunnel key opened to everyone each fail
// with a fix line, in --json and in the table; put back, they pass again.
func (b *box) doctorPortal() {
	b.t.Helper()
	allPass := func(when string) {
		for id, c := range b.doctorReport() {
			if c.Status != "PASS" || !strings.HasPrefix(c.Safeguard, portalChecks[id]) {
				b.t.Errorf("%s: doctor %s: %s %s (%s), want PASS under %s", when, id, c.Status, c.Finding, c.Safeguard, portalChecks[id])
			}
		}
	}
	allPass("portal healthy")
	replicaSQL := func(q string) {
		b.mustRun("mariadb", "--socket=/run/emrkit-portal-replica/mysqld.sock", "-e", q)
	}
	b.mustRun("mariadb", "-e", "GRANT PROCESS ON *.* TO 'emrkit_portal'@'127.0.0.1'")
	replicaSQL("STOP SLAVE")
	b.mustRun("chmod", "0644", "/var/lib/emrkit-tunnel/id_ed25519")
	got := b.doctorReport()
	for _, id := range []string{"portal.db-grants", "portal.replica", "portal.tunnel-key"} {
		if c := got[id]; c.Status != "FAIL" || c.Fix == "" {
			b.t.Errorf("broken portal: doctor %s: %s %q fix %q, want FAIL with a fix", id, c.Status, c.Finding, c.Fix)
		}
	}
	text, code := b.run("emrkit", "doctor")
	if code != 3 || !strings.Contains(text, "portal.tunnel-key") || !strings.Contains(text, "164.312(e)(1)") {
		b.t.Errorf("doctor's table (exit %d) lacks the failing portal checks:\n%s", code, text)
	}
	b.mustRun("mariadb", "-e", "REVOKE PROCESS ON *.* FROM 'emrkit_portal'@'127.0.0.1'")
	replicaSQL("START SLAVE")
	b.mustRun("chmod", "0600", "/var/lib/emrkit-tunnel/id_ed25519")
	b.waitFor(30*time.Second, "replication running again", func() bool { return b.doctorReport()["portal.replica"].Status == "PASS" })
	allPass("portal put back")
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

// portalBox is a booted OpenEMR host with the debs copied in (as /root/<name>.deb), debconf
// preseeded for the portal and its replica (the box's own sshd as the portal, the restart
// allowed or not), Apache listening on 443 and the portal's account made.
func portalBox(t *testing.T, debs map[string]string, restart bool) *box {
	b := newBox(t)
	b.openemrHost()
	for name, deb := range debs {
		data, err := os.ReadFile(deb)
		must(t, err)
		must(t, os.WriteFile(b.path("/root/"+name+".deb"), data, 0o644))
	}
	hostKey := strings.Fields(b.mustRun("cat", "/etc/ssh/ssh_host_ed25519_key.pub"))
	preseed := openemrPreseed + "emrkit emrkit/portal boolean true\n" +
		"emrkit emrkit/portal-host string 127.0.0.1:22\n" +
		"emrkit emrkit/portal-user string tunnel-clinic1\n" +
		"emrkit emrkit/portal-host-key string " + hostKey[0] + " " + hostKey[1] + "\n" +
		"emrkit emrkit/portal-replica boolean true\n" +
		"emrkit emrkit/portal-replica-restart boolean " + strconv.FormatBool(restart) + "\n"
	must(t, os.WriteFile(b.path("/root/preseed"), []byte(preseed), 0o644))
	b.mustRun("debconf-set-selections", "/root/preseed")
	// What the forward reaches at the clinic's end: Apache on 443 (plain HTTP: the box has no
	// certificate; any HTTP answer shows the forward carries it).
	must(t, os.WriteFile(b.path("/etc/apache2/conf-enabled/test-listen-443.conf"), []byte("Listen 443\n"), 0o644))
	b.mustRun("systemctl", "restart", "apache2")
	// The portal's end: its account, whose authorized_keys gets the line emrkit prints.
	b.mustRun("useradd", "--create-home", "--shell", "/bin/sh", "tunnel-clinic1")
	return b
}

// replicaRows is the replica's count of portal accounts.
func (b *box) replicaRows() string {
	out, _ := b.run("mariadb", "--socket=/run/emrkit-portal-replica/mysqld.sock", "-N", "-B", "-e",
		"SELECT COUNT(*) FROM openemr.patient_access_onsite")
	return strings.TrimSpace(out)
}

// primaryRows is MariaDB's count of portal accounts.
func (b *box) primaryRows() int {
	n, err := strconv.Atoi(strings.TrimSpace(b.mustRun("mariadb", "-N", "-B", "-e", "SELECT COUNT(*) FROM openemr.patient_access_onsite")))
	must(b.t, err)
	return n
}

// insertPortalRow adds a portal account on MariaDB.
func (b *box) insertPortalRow() {
	b.mustRun("mariadb", "-e", "INSERT INTO openemr.patient_access_onsite (pid, portal_username) VALUES ((SELECT COALESCE(MAX(pid),0)+1 FROM openemr.patient_access_onsite AS p), 'booted')")
}

// TestBootedPortalTunnel: on a Debian 12 booted under real systemd, a preseeded install
// with the portal and its replica on (the portal's end being the box's own sshd) brings the
// tunnel unit up once the portal holds its key, with the forward answering at the portal's
// end; the install itself restarts MariaDB (allowed by debconf) and the replica unit
// replicates the portal's rows; each unit comes back after kill -9 of its main process,
// the replica after MariaDB's restart, the tunnel after the portal's sshd's, both after a
// reboot; a changed unit file restarts the replica once; the replica logs to the journal;
// each unit's exposure is at most 1.5; purge leaves no unit file or link, no process, no
// system user, no datadir and no loaded unit; the journal holds no line of the tunnel's
// private key and no database password.
func TestBootedPortalTunnel(t *testing.T) {
	b := portalBox(t, map[string]string{"emrkit": buildDeb(t)}, true)

	// Allowed by debconf, the install restarts MariaDB for its binary log itself, and the
	// replica is up when dpkg returns.
	out := b.mustRun("dpkg", "-i", "/root/emrkit.deb")
	t.Logf("dpkg -i:\n%s", out)
	if !strings.Contains(out, "applied            restart MariaDB once") {
		t.Errorf("dpkg -i did not report restarting MariaDB:\n%s", out)
	}
	if st := b.unitProp(replicaUnit, "ActiveState"); st != "active" {
		t.Fatalf("after dpkg -i %s is %s", replicaUnit, st)
	}
	// The run that started the replica does not restart it for the files it wrote first.
	if n := strings.Count(b.mustRun("journalctl", "--no-pager", "-o", "cat", "-u", replicaUnit), "ready for connections"); n != 1 {
		t.Errorf("the install started the replica %d times, want once", n)
	}
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

	replicates := func(n int) func() bool {
		return func() bool { return b.replicaRows() == strconv.Itoa(n) }
	}
	rows := b.primaryRows()
	b.waitFor(30*time.Second, "the replica holding the portal's rows", replicates(rows))
	insert := func() {
		b.insertPortalRow()
		rows++
	}
	insert()
	b.waitFor(30*time.Second, "a new portal row on the replica", replicates(rows))
	b.doctorPortal()
	// The row is written while the replica is down: it catches up once back.
	took = b.killAndWait(replicaUnit, insert, func() bool { return true })
	t.Logf("replica back %.1f s after kill -9 of its mariadbd", took.Seconds())
	b.waitFor(30*time.Second, "a portal row written while the replica was down", replicates(rows))

	took = b.killAndWait(tunnelUnit, func() {}, forwardAnswers)
	t.Logf("tunnel back %.1f s after kill -9 of its ssh", took.Seconds())

	// The clinic's MariaDB restarted: the replica's IO thread reconnects by itself.
	b.mustRun("systemctl", "restart", "mariadb")
	insert()
	took = b.waitFor(45*time.Second, "a portal row replicated after MariaDB's restart", replicates(rows))
	t.Logf("replica caught up %.1f s after MariaDB's restart", took.Seconds())

	// The portal's sshd goes away with its sessions (the portal host restarting it hard):
	// the tunnel's ssh exits, its unit keeps retrying, and it is back once sshd is.
	tunnelPID := b.unitProp(tunnelUnit, "MainPID")
	b.mustRun("systemctl", "stop", "ssh")
	b.run("pkill", "-f", "sshd: tunnel-clinic1")
	b.waitFor(30*time.Second, "the tunnel noticing the portal's sshd is gone", func() bool { return !forwardAnswers() })
	b.mustRun("systemctl", "start", "ssh")
	took = b.waitFor(30*time.Second, "the tunnel back after the portal's sshd restarted", func() bool {
		return b.unitProp(tunnelUnit, "MainPID") != tunnelPID && forwardAnswers()
	})
	t.Logf("tunnel answering %.1f s after the portal's sshd was back", took.Seconds())

	// A unit file changed under the running replica (here by hand; an upgrade does the same):
	// apply writes emrkit's back, and the replica restarts once to take it. A run that
	// changes nothing restarts nothing.
	replicaPID := b.unitProp(replicaUnit, "MainPID")
	b.mustRun("emrkit", "apply")
	if p := b.unitProp(replicaUnit, "MainPID"); p != replicaPID {
		t.Errorf("a no-op apply restarted the replica (pid %s -> %s)", replicaPID, p)
	}
	b.mustRun("sed", "-i", "s/^ProtectClock=true$/ProtectClock=false/", "/etc/systemd/system/"+replicaUnit)
	out = b.mustRun("emrkit", "apply")
	if !strings.Contains(out, "activated          portal replica") {
		t.Errorf("apply over a changed unit did not restart the replica:\n%s", out)
	}
	if p := b.unitProp(replicaUnit, "MainPID"); p == replicaPID || b.unitProp(replicaUnit, "NeedDaemonReload") != "no" || b.unitProp(replicaUnit, "ProtectClock") != "yes" {
		t.Errorf("after apply over a changed unit: pid %s (was %s), NeedDaemonReload %s, ProtectClock %s",
			p, replicaPID, b.unitProp(replicaUnit, "NeedDaemonReload"), b.unitProp(replicaUnit, "ProtectClock"))
	}
	insert()
	b.waitFor(30*time.Second, "a portal row replicated after the replica's restart", replicates(rows))

	// The replica logs to the journal, and within the file limit systemd gives it.
	rlog := b.mustRun("journalctl", "--no-pager", "-o", "cat", "-u", replicaUnit)
	if !strings.Contains(rlog, "ready for connections") || strings.Contains(rlog, "max_open_files") {
		t.Errorf("the replica's journal lacks its start or warns about open files:\n%s", rlog)
	}

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
	var passwords []string
	for _, f := range []string{"/etc/emrkit/portal-db.password", "/etc/emrkit/portal-replica-source.password", "/etc/emrkit/portal-replica-offsite.password"} {
		passwords = append(passwords, strings.TrimSpace(b.mustRun("cat", f)))
	}
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
	for _, pw := range passwords {
		if len(pw) < 16 || strings.Contains(journal, pw) {
			t.Errorf("a database password (%d characters) is in the journal, or too short to look for", len(pw))
		}
	}
}

// TestBootedPortalUpgradeDowngrade: under real systemd, 0.6.0 installed with the portal
// replica, which waits for MariaDB's restart; upgraded to this release with the restart not
// allowed, it still waits, and status names the one command that finishes it; that command
// restarts MariaDB and the replica runs and replicates; downgraded back to 0.6.0, the
// replica keeps running and replicating, the journal keeps nothing of the newer release and
// status finds no drift.
func TestBootedPortalUpgradeDowngrade(t *testing.T) {
	b := portalBox(t, map[string]string{"old": buildDeb(t, "VERSION=0.6.0"), "new": buildDeb(t)}, false)
	out := b.mustRun("dpkg", "-i", "/root/old.deb")
	if !strings.Contains(out, "systemctl restart mariadb") {
		t.Fatalf("0.6.0 did not name the MariaDB restart the replica waits for:\n%s", out)
	}
	mariadbPID := b.unitProp("mariadb.service", "MainPID")
	out = b.mustRun("dpkg", "-i", "/root/new.deb")
	t.Logf("upgrade:\n%s", out)
	if b.unitProp("mariadb.service", "MainPID") != mariadbPID || b.unitProp(replicaUnit, "LoadState") != "not-found" {
		t.Fatalf("the upgrade restarted MariaDB or installed the replica unit without being allowed to")
	}
	status, code := b.run("emrkit", "status")
	if code != 3 || !strings.Contains(status, "`emrkit apply --restart-mariadb`") {
		t.Errorf("status (exit %d) does not name the one command the replica waits for:\n%s", code, status)
	}

	out = b.mustRun("emrkit", "apply", "--restart-mariadb")
	t.Logf("apply --restart-mariadb:\n%s", out)
	if !strings.Contains(out, "applied            restart MariaDB once") || b.unitProp("mariadb.service", "MainPID") == mariadbPID {
		t.Fatalf("apply --restart-mariadb did not restart MariaDB")
	}
	replicated := func(what string) {
		t.Helper()
		b.insertPortalRow()
		want := strconv.Itoa(b.primaryRows())
		b.waitFor(30*time.Second, what, func() bool { return b.replicaRows() == want })
	}
	replicated("the replica replicating after apply --restart-mariadb")
	if out, code := b.run("emrkit", "apply"); code != 0 || strings.Contains(out, "restart MariaDB") {
		t.Errorf("a second apply (exit %d) restarted MariaDB again:\n%s", code, out)
	}

	out = b.mustRun("dpkg", "-i", "/root/old.deb")
	t.Logf("downgrade:\n%s", out)
	if st := b.unitProp(replicaUnit, "ActiveState"); st != "active" {
		t.Fatalf("after the downgrade %s is %s", replicaUnit, st)
	}
	replicated("the replica replicating after the downgrade")
	status, _ = b.run("emrkit", "status")
	if strings.Contains(status, "drift") {
		t.Errorf("after the downgrade status finds drift:\n%s", status)
	}
	js, _ := b.run("emrkit", "status", "--json")
	var rows []struct{ Kind, State string }
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	for _, r := range rows {
		if r.Kind == replica.PrimaryRestartKind && r.State != "undone" {
			t.Errorf("after the downgrade the newer release's restart entry is %s", r.State)
		}
	}
}
