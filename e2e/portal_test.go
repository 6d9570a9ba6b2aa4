package e2e

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/openemrfixture"
)

// portalHostKey makes a real ed25519 host key for the portal host and returns its public
// line as ssh-keyscan prints it, without the host.
func portalHostKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hostkey")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(p + ".pub")
	must(t, err)
	f := strings.Fields(string(pub))
	return f[0] + " " + f[1]
}

// portalPreseed is an OpenEMR host's preseed with the offsite portal on: a tunnel to a portal
// host that cannot be reached from the chroot (TEST-NET-1), and the filtered replica.
func portalPreseed(hostKey string) string {
	return openemrPreseed + "emrkit emrkit/portal boolean true\n" +
		"emrkit emrkit/portal-host string 192.0.2.10:2222\n" +
		"emrkit emrkit/portal-user string tunnel-clinic1\n" +
		"emrkit emrkit/portal-host-key string " + hostKey + "\n" +
		"emrkit emrkit/portal-replica boolean true\n"
}

// portalHost makes the chroot an OpenEMR host whose database also holds the portal's tables
// and two it must never see.
func (c *chroot) portalHost() {
	c.t.Helper()
	c.openemrHost()
	must(c.t, os.WriteFile(c.path("/tmp/portal.sql"), []byte(openemrfixture.PortalSQL), 0o644))
	c.mustRun("sh", "-c", "mariadb openemr </tmp/portal.sql")
}

// accounts is MariaDB's account table, with every account's privileges, for comparison with
// a baseline.
func (c *chroot) accounts() string {
	c.t.Helper()
	return c.mustRun("mariadb", "-N", "-B", "-e",
		"SELECT User, Host, Priv FROM mysql.global_priv ORDER BY User, Host; SELECT * FROM mysql.tables_priv ORDER BY User, Host, Db, Table_name; SELECT * FROM mysql.db ORDER BY User, Host, Db")
}

// shadowBackups are the copies shadow's tools (adduser, deluser) keep of the account files
// they rewrite: /etc/passwd- holds the file as it was before the last change, so it differs
// after any account comes and goes. They are the tools' files, not emrkit's.
var shadowBackups = map[string]bool{"/etc/passwd-": true, "/etc/group-": true, "/etc/shadow-": true, "/etc/gshadow-": true}

func withoutShadowBackups(diffs []string) []string {
	var out []string
	for _, d := range diffs {
		f := strings.Fields(d)
		if len(f) >= 2 && shadowBackups[strings.TrimSuffix(f[1], ":")] {
			continue
		}
		out = append(out, d)
	}
	return out
}

// changedLineRE matches the runner's line for a change (not the summary's counts).
var changedLineRE = regexp.MustCompile(`(?m)^(applied|re-applied|finished|undone)\s{2,}`)

var authorizedKeyRE = regexp.MustCompile(`^restrict,port-forwarding,permitlisten="localhost:18443",permitlisten="localhost:13306",command="/bin/false" ssh-ed25519 AAAA[A-Za-z0-9+/=]+ \S.*$`)

// TestDpkgPortalPreseeded installs 0.6.0 with a preseeded offsite portal on an OpenEMR host:
// the portal's database user holds exactly its grants, the tunnel's system user, key, pinned
// known_hosts and unit are in place (the unit's start waits for systemd, which a chroot does
// not run), the primary's binary-log drop-in is written and the replica waits for the
// restart emrkit never does on its own; a reconfigure changes nothing; the downgrade to 0.5.0
// undoes every portal change and keeps the OpenEMR hardening; purge leaves the host, its
// accounts and its database as they were.
func TestDpkgPortalPreseeded(t *testing.T) {
	debs := map[string]string{"new": buildDeb(t), "old": buildDeb(t, "VERSION=0.5.0")}
	c := newChroot(t)
	c.portalHost()
	in := c.installDebs(debs)
	hostKey := portalHostKey(t)
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte(portalPreseed(hostKey)), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	baseline := c.treeState()
	dump := func() string {
		return c.mustRun("mariadb-dump", "--skip-dump-date", "--skip-comments", "--order-by-primary", "--skip-extended-insert", "openemr")
	}
	baseDB, baseAccounts := dump(), c.accounts()

	out := c.mustRun("dpkg", "-i", in["new"])
	t.Logf("dpkg -i:\n%s", out)
	grants := c.mustRun("mariadb", "-N", "-B", "-e", "SHOW GRANTS FOR 'emrkit_portal'@'127.0.0.1'")
	for _, want := range []string{"GRANT USAGE ON *.* TO `emrkit_portal`@`127.0.0.1` IDENTIFIED BY PASSWORD '*",
		"GRANT SELECT, INSERT, UPDATE ON `openemr`.`patient_access_onsite` TO `emrkit_portal`@`127.0.0.1`",
		"GRANT SELECT ON `openemr`.`patient_data` TO `emrkit_portal`@`127.0.0.1`",
		"GRANT SELECT ON `openemr`.`openemr_postcalendar_events` TO `emrkit_portal`@`127.0.0.1`"} {
		if !strings.Contains(grants, want) {
			t.Errorf("the portal user's grants lack %q:\n%s", want, grants)
		}
	}
	if n := strings.Count(strings.TrimSpace(grants), "\n") + 1; n != 4 {
		t.Errorf("the portal user has %d grants, want 4:\n%s", n, grants)
	}
	if got := c.mustRun("stat", "-c", "%a %U", "/etc/emrkit/portal-db.password"); strings.TrimSpace(got) != "600 root" {
		t.Errorf("portal password file: %s", got)
	}
	if got := c.mustRun("getent", "passwd", "emrkit-tunnel"); !strings.Contains(got, ":/var/lib/emrkit-tunnel:/usr/sbin/nologin") {
		t.Errorf("tunnel user: %s", got)
	}
	if got := c.mustRun("stat", "-c", "%a %U", "/var/lib/emrkit-tunnel/id_ed25519"); strings.TrimSpace(got) != "600 emrkit-tunnel" {
		t.Errorf("tunnel key: %s", got)
	}
	if kh, err := os.ReadFile(c.path("/etc/emrkit/portal-tunnel.known_hosts")); err != nil || !strings.Contains(string(kh), "[192.0.2.10]:2222 "+hostKey) {
		t.Errorf("pinned known_hosts: %q, %v", kh, err)
	}
	if _, err := os.Stat(c.path("/etc/systemd/system/emrkit-portal-tunnel.service")); err != nil {
		t.Errorf("tunnel unit: %v", err)
	}
	line := strings.TrimSpace(c.mustRun("emrkit", "portal", "authorized-key"))
	if !authorizedKeyRE.MatchString(line) {
		t.Errorf("authorized-key printed %q", line)
	}
	// The replica waits for the MariaDB restart: replica-config says so rather than print a
	// configuration with no account behind it.
	if out, code := c.run("emrkit", "portal", "replica-config"); code == 0 || !strings.Contains(out, "not set up yet") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("replica-config before the restart exited %d:\n%s", code, out)
	}
	st, code := c.run("emrkit", "portal", "status")
	t.Logf("portal status (exit %d):\n%s", code, st)
	if code != 3 || !strings.Contains(st, "emrkit_portal@127.0.0.1") {
		t.Errorf("portal status without systemd exited %d, want 3 (the tunnel is down):\n%s", code, st)
	}
	if out := c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit"); changedLineRE.MatchString(out) {
		t.Errorf("reconfigure changed something:\n%s", out)
	}

	out = c.mustRun("dpkg", "-i", in["old"])
	t.Logf("downgrade to 0.5.0:\n%s", out)
	if got := c.accounts(); got != baseAccounts {
		t.Errorf("MariaDB's accounts after the downgrade differ:\n%s", lineDiff(baseAccounts, got))
	}
	if _, code := c.run("getent", "passwd", "emrkit-tunnel"); code == 0 {
		t.Error("the tunnel user survived the downgrade")
	}
	for _, p := range []string{"/etc/emrkit/portal-db.password", "/etc/systemd/system/emrkit-portal-tunnel.service",
		"/etc/emrkit/portal-tunnel.known_hosts", "/var/lib/emrkit-tunnel"} {
		if _, err := os.Lstat(c.path(p)); err == nil {
			t.Errorf("%s survived the downgrade", p)
		}
	}
	if _, err := os.Lstat(c.path("/etc/apache2/conf-available/emrkit-openemr.conf")); err != nil {
		t.Errorf("the downgrade took the OpenEMR hardening away: %v", err)
	}

	c.mustRun("dpkg", "-i", in["new"])
	out = c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("dpkg --purge:\n%s", out)
	if got := dump(); got != baseDB {
		t.Errorf("OpenEMR's database after purge differs:\n%s", lineDiff(baseDB, got))
	}
	if got := c.accounts(); got != baseAccounts {
		t.Errorf("MariaDB's accounts after purge differ:\n%s", lineDiff(baseAccounts, got))
	}
	assertOnlyBackupsLeft(t, withoutShadowBackups(diffStates(baseline, c.treeState())))
}

// TestPortalBadInput: a portal table name with a quote, a host key in an unknown format and
// a portal on an OSCAR host are refused in one line, non-zero, with nothing changed.
func TestPortalBadInput(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.portalHost()
	in := c.installDebs(map[string]string{"new": deb})
	c.mustRun("sh", "-c", "debconf-set-selections <<'E'\n"+openemrPreseed+"E\ndpkg -i "+in["new"])
	before, accounts := c.treeState(), c.accounts()
	key := portalHostKey(t)
	// Each case replaces the profile line of the installed configuration.
	for name, tc := range map[string]struct{ profile, want string }{
		"quote in table":  {"profile: openemr\nportal: {enable: true, tables: [\"patient_data'; DROP TABLE pnotes; --\"]}", "portal.tables[0]"},
		"host key format": {"profile: openemr\nportal: {enable: true, tunnel: {host: portal.example, user: t1, host_key: \"ssh-dss AAAAB3NzaC1kc3MAAACBA\"}}", "portal.tunnel.host_key"},
		"remote port":     {"profile: openemr\nportal: {enable: true, tunnel: {host: portal.example, user: t1, host_key: \"" + key + "\", remote_port: 70000}}", "portal.tunnel.remote_port"},
		"oscar profile":   {"profile: oscar\nportal: {enable: true}", "portal.enable"},
	} {
		cfg := strings.Replace(c.mustRun("cat", "/etc/emrkit/emrkit.yaml"), "profile: openemr", tc.profile, 1)
		must(t, os.WriteFile(c.path("/tmp/bad.yaml"), []byte(cfg), 0o600))
		out, code := c.run("emrkit", "--config", "/tmp/bad.yaml", "apply")
		if code == 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want one line naming %s:\n%s", name, code, tc.want, out)
		}
	}
	if d := diffStates(before, c.treeState()); len(d) > 0 {
		t.Errorf("bad input changed the host:\n%s", strings.Join(d, "\n"))
	}
	if got := c.accounts(); got != accounts {
		t.Errorf("bad input changed MariaDB's accounts:\n%s", lineDiff(accounts, got))
	}
}

// Generated per install: the portal user's password hash (and when it was set), the tunnel
// key, the replication passwords.
var (
	passwordHashRE    = regexp.MustCompile(`\*[0-9A-F]{40}`)
	passwordChangedRE = regexp.MustCompile(`"password_last_changed":[0-9]+`)
)

// portalState is what a converged OpenEMR host with the portal looks like, generated secrets
// masked: MariaDB's accounts, the tunnel's system user, the files emrkit keeps for the portal
// (mode and owner; content only where it is not generated), the OpenEMR hardening and status.
func (c *chroot) portalState() string {
	c.t.Helper()
	var b strings.Builder
	b.WriteString(passwordChangedRE.ReplaceAllString(passwordHashRE.ReplaceAllString(c.accounts(), "*HASH"), `"password_last_changed":TIME`))
	user, _ := c.run("getent", "passwd", "emrkit-tunnel")
	fmt.Fprintf(&b, "tunnel user: %s\n", user)
	generated := map[string]bool{"/etc/emrkit/portal-db.password": true, "/var/lib/emrkit-tunnel/id_ed25519": true,
		"/var/lib/emrkit-tunnel/id_ed25519.pub": true}
	files := c.tree("/etc/emrkit", "/var/lib/emrkit-tunnel", "/var/lib/emrkit-portal-replica", "/etc/systemd/system",
		"/etc/mysql/mariadb.conf.d", "/etc/apache2/conf-enabled")
	for _, p := range slices.Sorted(maps.Keys(files)) {
		desc := files[p]
		switch {
		case p == "/etc/emrkit/emrkit.yaml":
			continue // rewritten by each configure with the same answers
		case generated[p] || strings.HasSuffix(p, ".password") || strings.HasPrefix(p, "/var/lib/emrkit-portal-replica/"):
			desc = strings.Join(strings.Fields(desc)[:2], " ")
		}
		fmt.Fprintf(&b, "%s %s\n", p, desc)
	}
	out, code := c.run("emrkit", "status")
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "undone ") && !strings.HasPrefix(l, "ok: ") {
			fmt.Fprintln(&b, strings.Join(strings.Fields(l), " "))
		}
	}
	fmt.Fprintf(&b, "status exit %d\n", code)
	return b.String()
}

// TestPortalSIGKILLAtEveryJournalPoint kills emrkit at every journal point of a preseeded
// portal install, of the downgrade to 0.5.0 that undoes the portal, and of the purge, each
// recovered as an admin would; the host must equal the uninterrupted run's. The three run in
// parallel, each in its own chroot.
func TestPortalSIGKILLAtEveryJournalPoint(t *testing.T) {
	debs := map[string]string{
		"old": buildDeb(t, "VERSION=0.5.0", "TAGS=faultinject"),
		"new": buildDeb(t, "TAGS=faultinject"),
	}
	hostKey := portalHostKey(t)
	setup := func(t *testing.T) *faultHost {
		c := newChroot(t)
		c.portalHost()
		in := c.installDebs(debs)
		must(t, os.WriteFile(c.path("/tmp/preseed"), []byte(portalPreseed(hostKey)), 0o644))
		baseDB, accounts, baseline := c.mustRun("mariadb-dump", "--skip-dump-date", "openemr"), c.accounts(), c.treeState()
		h := &faultHost{chroot: c, in: in, assertBaseline: func(when string) {
			t.Helper()
			if c.mustRun("mariadb-dump", "--skip-dump-date", "openemr") != baseDB || c.accounts() != accounts {
				t.Fatalf("%s: the database or its accounts differ from the baseline", when)
			}
			assertOnlyBackupsLeft(t, withoutShadowBackups(diffStates(baseline, c.treeState())))
		}}
		return h
	}
	t.Run("install", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		n := h.points(h.install("new")...)
		want := h.portalState()
		h.mustRun("dpkg", "--purge", "emrkit")
		h.assertBaseline("uninterrupted purge")
		t.Logf("install: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.killAt(i, h.install("new")...)
			h.mustRun("dpkg", "--configure", "-a")
			if got := h.portalState(); got != want {
				t.Fatalf("install killed at point %d converged differently:\n%s", i, lineDiff(want, got))
			}
			h.mustRun("dpkg", "--purge", "emrkit")
			h.assertBaseline(fmt.Sprintf("purge after install killed at %d", i))
		}
	})
	t.Run("downgrade", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.mustRun(h.install("old")...)
		want := h.portalState() // a fresh install of 0.5.0: no portal
		h.mustRun(h.install("new")...)
		n := h.points(h.install("old")...)
		if got := h.portalState(); got != want {
			t.Fatalf("downgrade differs from a fresh install of 0.5.0:\n%s", lineDiff(want, got))
		}
		h.mustRun("dpkg", "--purge", "emrkit")
		t.Logf("downgrade: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.mustRun(h.install("new")...)
			h.killAt(i, h.install("old")...)
			h.run("dpkg", "--configure", "-a")
			if !strings.HasPrefix(dpkgVersion(h.chroot), "0.5.0-1 ii") {
				h.mustRun(h.install("old")...)
			}
			if got := h.portalState(); got != want {
				t.Fatalf("downgrade killed at point %d converged differently:\n%s", i, lineDiff(want, got))
			}
			h.mustRun("dpkg", "--purge", "emrkit")
		}
	})
	t.Run("purge", func(t *testing.T) {
		t.Parallel()
		h := setup(t)
		h.mustRun(h.install("new")...)
		n := h.points("dpkg", "--purge", "emrkit")
		h.assertBaseline("uninterrupted purge")
		t.Logf("purge: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.mustRun(h.install("new")...)
			h.killAt(i, "dpkg", "--purge", "emrkit")
			h.mustRun("dpkg", "--purge", "emrkit")
			h.assertBaseline(fmt.Sprintf("purge killed at point %d", i))
		}
	})
}
