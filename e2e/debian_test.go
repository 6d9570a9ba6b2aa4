package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Issue 6: the Debian lifecycle under real dpkg, debconf and ufw in a chroot session.

const preseed = `emrkit emrkit/totp-users string oscardoc, nurse
emrkit emrkit/firewall boolean true
emrkit emrkit/https-port string 8443
emrkit emrkit/ssh-port string 2222
emrkit emrkit/migrations multiselect middle-names, roster-enrolled-to
`

// installDebs copies packages into the chroot's /tmp and returns their paths there.
func (c *chroot) installDebs(debs map[string]string) map[string]string {
	c.t.Helper()
	in := map[string]string{}
	for name, deb := range debs {
		data, err := os.ReadFile(deb)
		must(c.t, err)
		p := "/tmp/" + name + ".deb"
		must(c.t, os.WriteFile(c.path(p), data, 0o644))
		in[name] = p
	}
	return in
}

// Generated per install: TOTP secrets, the export key's fingerprint and the times in the
// data migrations' progress rows.
var (
	secretRE        = regexp.MustCompile(`'[A-Z2-7]{32}'`)
	fingerprintRE   = regexp.MustCompile(`PGP_KEY=[0-9A-F]{40}`)
	progressTimesRE = regexp.MustCompile("(?m)^(INSERT INTO `emrkit_migrations` VALUES .*),'[0-9: -]{19}','[0-9: -]{19}'\\);$")
)

// hostState is what a converged install looks like, with generated secrets masked.
func (c *chroot) hostState() string {
	c.t.Helper()
	props, _ := os.ReadFile(c.path("/usr/share/tomcat9/oscar.properties"))
	cronFile, _ := os.ReadFile(c.path("/etc/cron.d/emrkit"))
	out, code := c.run("emrkit", "status")
	// Undone entries are the journal's history, not the host: a downgrade leaves some.
	var status []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "undone ") && !strings.HasPrefix(l, "ok: ") {
			status = append(status, strings.Join(strings.Fields(l), " "))
		}
	}
	props = fingerprintRE.ReplaceAll(props, []byte("PGP_KEY=FINGERPRINT"))
	return fmt.Sprintf("props:\n%s\ncron:\n%s\ndb:\n%s\nufw:\n%s\nstatus (exit %d):\n%s",
		props, cronFile, progressTimesRE.ReplaceAllString(secretRE.ReplaceAllString(c.dbDump(), "'SECRET'"), "$1,'TIME','TIME');"),
		c.mustRun("ufw", "status", "verbose"), code, strings.Join(status, "\n"))
}

// patients is the demographic table, for byte-for-byte comparison.
func (c *chroot) patients() string {
	c.t.Helper()
	return c.mustRun("mariadb-dump", "--skip-dump-date", "--skip-comments", "--order-by-primary", "--skip-extended-insert", "--hex-blob", "oscar_15", "demographic")
}

// migrationWork counts the rows the data migrations would change: multi-word first names
// with an empty middleNames, and rostered patients with an MRP but no roster_enrolled_to.
func (c *chroot) migrationWork() string {
	c.t.Helper()
	return c.sql("SELECT SUM(TRIM(first_name) LIKE '% %' AND (middleNames IS NULL OR middleNames = '')), " +
		"SUM(roster_status = 'RO' AND (roster_enrolled_to IS NULL OR roster_enrolled_to = '') AND provider_no <> '') FROM demographic")
}

func dpkgVersion(c *chroot) string {
	out, _ := c.run("dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", "emrkit")
	return strings.TrimSpace(out)
}

// TestPreseedUpgradeDowngradeRemovePurge walks the package through its life on a fixture
// OSCAR host: preseeded noninteractive install, re-configure, upgrade from an older release,
// downgrade back, upgrade again, remove, purge.
func TestPreseedUpgradeDowngradeRemovePurge(t *testing.T) {
	debs := map[string]string{"old": buildDeb(t, "VERSION=0.1.0"), "new": buildDeb(t)}
	c := newChroot(t)
	c.oscarHost(chrootProps)
	in := c.installDebs(debs)
	baseUFW := c.mustRun("ufw", "status", "verbose")
	baseline := c.treeState()
	baseDB := c.dbDump()
	basePatients := c.patients()
	if c.migrationWork() == "0\t0" {
		t.Fatal("the fixture has nothing for the data migrations to do")
	}

	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte(preseed), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	out := c.mustRun("dpkg", "-i", in["new"])
	t.Logf("preseeded install:\n%s", out)
	if got := c.migrationWork(); got != "0\t0" {
		t.Fatalf("preseeded migrations left work undone (multi-word first names without middleNames, RO without roster_enrolled_to): %s", got)
	}
	if list := c.mustRun("emrkit", "migrate", "list"); strings.Count(list, "done, ") != 2 {
		t.Fatalf("migrate list after install:\n%s", list)
	}
	if got := c.sql("SELECT user_name FROM security WHERE totp_enabled = 1 ORDER BY user_name"); got != "nurse\noscardoc" {
		t.Fatalf("preseeded totp-users not enrolled: %q", got)
	}
	ufw := c.mustRun("ufw", "status")
	if !strings.Contains(ufw, "2222/tcp") || !strings.Contains(ufw, "Status: active") {
		t.Fatalf("preseeded ssh-port not allowed:\n%s", ufw)
	}
	cfg, _ := os.ReadFile(c.path("/etc/emrkit/emrkit.yaml"))
	if !strings.Contains(string(cfg), "- nurse") || !strings.Contains(string(cfg), "ssh_port: 2222") {
		t.Fatalf("config does not carry the answers:\n%s", cfg)
	}
	installed := c.hostState()
	if !strings.Contains(installed, "status (exit 0)") {
		t.Fatalf("status not clean after install:\n%s", installed)
	}
	// The installed commands back up, encrypted to the generated export key, and restore
	// into a scratch database with identical checksums.
	file := strings.TrimSpace(c.mustRun("emrkit", "backup", "--encrypt"))
	if !strings.HasPrefix(file, "/var/backups/emrkit/oscar_15-backup-") || !strings.HasSuffix(file, ".sql.gz.pgp") {
		t.Fatalf("backup printed %q", file)
	}
	c.mustRun("emrkit", "restore", "--yes", "--database", "scratch", file)
	sums := c.sql("CHECKSUM TABLE oscar_15.demographic, scratch.demographic, oscar_15.security, scratch.security")
	var got []string
	for _, l := range strings.Split(sums, "\n") {
		got = append(got, strings.Fields(l)[1])
	}
	if len(got) != 4 || got[0] != got[1] || got[2] != got[3] {
		t.Fatalf("restored checksums differ:\n%s", sums)
	}
	c.sql("DROP DATABASE scratch")

	// dpkg --configure -a has nothing to do; re-running postinst changes nothing.
	c.mustRun("dpkg", "--configure", "-a")
	if out := c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit"); !strings.Contains(out, "nothing to change") {
		t.Fatalf("reconfigure changed something:\n%s", out)
	}
	if got := c.hostState(); got != installed {
		t.Fatalf("re-running the configure step changed the host:\n%s\n---\n%s", installed, got)
	}

	// Downgrade to 0.1.0: the newer release's steps (the firewall) are undone, the rest stays.
	out = c.mustRun("dpkg", "-i", in["old"])
	t.Logf("downgrade:\n%s", out)
	if v := dpkgVersion(c); v != "0.1.0-1 ii" {
		t.Fatalf("after downgrade: %q", v)
	}
	if got := c.mustRun("ufw", "status", "verbose"); got != baseUFW {
		t.Fatalf("downgrade left the firewall:\n%s", got)
	}
	if got := c.sql("SELECT COUNT(*) FROM security WHERE totp_enabled = 1"); got != "2" {
		t.Fatal("downgrade undid 0.1.0's enrolments")
	}
	if _, code := c.run("emrkit", "status"); code != 0 {
		t.Fatal("status not clean after downgrade")
	}
	// The migrations are the newest release's: undone, after a backup, byte for byte.
	if c.patients() != basePatients {
		t.Fatal("downgrade did not restore the demographic table byte for byte")
	}
	if got := c.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='oscar_15' AND TABLE_NAME LIKE 'emrkit%'"); got != "0" {
		t.Fatalf("downgrade left %s emrkit tables in the database", got)
	}
	if backups, _ := filepath.Glob(c.path("/var/backups/emrkit/oscar_15-before-downgrade-*.sql.gz")); len(backups) != 1 {
		t.Fatalf("downgrade backups: %v", backups)
	}
	// Upgrade again: the firewall comes back, and the host is as after the first install.
	c.mustRun("dpkg", "-i", in["new"])
	if got := c.hostState(); got != installed {
		t.Fatalf("upgrade after downgrade differs from the first install:\n%s\n---\n%s", installed, got)
	}

	// Remove keeps data, config and firewall; the cron job goes quiet without the binary.
	c.mustRun("dpkg", "--remove", "emrkit")
	if v := dpkgVersion(c); !strings.HasSuffix(v, " rc") {
		t.Fatalf("after remove: %q", v)
	}
	if !strings.Contains(c.mustRun("ufw", "status"), "Status: active") {
		t.Fatal("remove took the firewall down")
	}
	for _, p := range []string{"/etc/emrkit/emrkit.yaml", "/var/lib/emrkit/journal.json", "/etc/cron.d/emrkit"} {
		if _, err := os.Stat(c.path(p)); err != nil {
			t.Fatalf("remove deleted %s", p)
		}
	}
	if out, code := c.run("sh", "-c", "[ -x /usr/bin/emrkit ] || exit 0; exit 1"); code != 0 {
		t.Fatalf("cron guard would still run emrkit: %s", out)
	}

	out = c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("purge after remove:\n%s", out)
	if got := c.dbDump(); got != baseDB {
		t.Fatalf("database after purge differs from its baseline")
	}
	if got := c.mustRun("ufw", "status", "verbose"); got != baseUFW {
		t.Fatalf("ufw after purge:\n%s", got)
	}
	if out, _ := c.run("debconf-show", "emrkit"); strings.TrimSpace(out) != "" {
		t.Fatalf("debconf still holds answers after purge:\n%s", out)
	}
	assertOnlyBackupsLeft(t, diffStates(baseline, c.treeState()))
}

// TestReconfigureConverges changes answers with dpkg-reconfigure: what no longer applies is
// undone, what is new is applied.
func TestReconfigureConverges(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	in := c.installDebs(map[string]string{"emrkit": deb})
	baseUFW := c.mustRun("ufw", "status", "verbose")
	c.mustRun("dpkg", "-i", in["emrkit"])
	if c.sql("SELECT totp_enabled FROM security WHERE user_name='oscardoc'") != "1" {
		t.Fatal("oscardoc not enrolled by default")
	}
	must(t, os.WriteFile(c.path("/tmp/answers"), []byte("emrkit emrkit/firewall boolean false\nemrkit emrkit/totp-users string nurse\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/answers")
	out := c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit")
	t.Logf("reconfigure:\n%s", out)
	if got := c.mustRun("ufw", "status", "verbose"); got != baseUFW {
		t.Fatalf("firewall off, but ufw:\n%s", got)
	}
	if got := c.sql("SELECT user_name, totp_enabled, pin FROM security WHERE user_name IN ('oscardoc','nurse') ORDER BY user_name"); got != "nurse\t1\t4321\noscardoc\t0\t1117" {
		t.Fatalf("enrolments after changing totp-users: %q", got)
	}
	if _, code := c.run("emrkit", "status"); code != 0 {
		t.Fatal("status not clean after reconfigure")
	}
	// Switching the PGP mode undoes the generated key setup and sets up symmetric encryption.
	must(t, os.WriteFile(c.path("/tmp/answers"), []byte("emrkit emrkit/pgp-mode select symmetric\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/answers")
	c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit")
	props, _ := os.ReadFile(c.path("/usr/share/tomcat9/oscar.properties"))
	if !strings.Contains(string(props), "PGP_BIN=/usr/bin/emrkit\nPGP_CMD=oscar-encrypt\n") || strings.Contains(string(props), "pgpgpg") {
		t.Fatalf("oscar.properties after switching to symmetric:\n%s", props)
	}
	if _, err := os.Stat(c.path("/var/lib/emrkit/pgp/export-key.sec.asc")); err == nil {
		t.Fatal("the generated private key stayed after switching away from generate")
	}
	if out, code := c.run("emrkit", "pgp", "selftest"); code != 0 {
		t.Fatalf("selftest after switching to symmetric: %d\n%s", code, out)
	}
	// A migration chosen later runs on reconfigure; dropped again, it is undone, except a row
	// the clinic edited in between, which is kept and reported.
	basePatients := c.patients()
	row := c.sql("SELECT demographic_no, QUOTE(roster_enrolled_to) FROM demographic WHERE roster_status = 'RO' AND (roster_enrolled_to IS NULL OR roster_enrolled_to = '') AND provider_no <> '' ORDER BY demographic_no LIMIT 1")
	id, was, _ := strings.Cut(row, "\t")
	must(t, os.WriteFile(c.path("/tmp/answers"), []byte("emrkit emrkit/migrations multiselect roster-enrolled-to\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/answers")
	if out := c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit"); !strings.Contains(out, "roster-enrolled-to: changed ") {
		t.Fatalf("reconfigure with a migration did not run it:\n%s", out)
	}
	c.sql("UPDATE demographic SET roster_enrolled_to = '777' WHERE demographic_no = " + id)
	must(t, os.WriteFile(c.path("/tmp/answers"), []byte("emrkit emrkit/migrations multiselect \n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/answers")
	out = c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit")
	t.Logf("reconfigure without the migration:\n%s", out)
	if !strings.Contains(out, "kept 1 rows edited or deleted since the migration (demographic_no "+id+")") || !strings.Contains(out, "undone 0, kept 1, unchanged") {
		t.Fatalf("undo did not report the edited row %s:\n%s", id, out)
	}
	if got := c.sql("SELECT roster_enrolled_to FROM demographic WHERE demographic_no = " + id); got != "777" {
		t.Fatalf("undo overwrote the clinic's edit: %q", got)
	}
	c.sql("UPDATE demographic SET roster_enrolled_to = " + was + " WHERE demographic_no = " + id)
	if c.patients() != basePatients {
		t.Fatal("undo did not restore every other row byte for byte")
	}
	// A hand edit of the config file survives the next configure and is fed back to debconf.
	cfgPath := c.path("/etc/emrkit/emrkit.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), "- nurse", "- doc2", 1)), 0o600))
	c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit")
	if got := strings.TrimSpace(c.mustRun("sh", "-c", "echo get emrkit/totp-users | debconf-communicate emrkit")); got != "0 doc2" {
		t.Fatalf("debconf not told of the hand edit: %q", got)
	}
	if got := c.sql("SELECT user_name FROM security WHERE totp_enabled = 1"); got != "doc2" {
		t.Fatalf("hand edit not applied: %q", got)
	}
}

// TestInvalidPreseedFailsClearly: a noninteractive install with a bad answer stops with
// one line naming the question, and changes nothing.
func TestInvalidPreseedFailsClearly(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	in := c.installDebs(map[string]string{"emrkit": deb})
	baseDB := c.dbDump()
	must(t, os.WriteFile(c.path("/tmp/answers"), []byte("emrkit emrkit/https-port string abc\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/answers")
	out, code := c.run("dpkg", "-i", in["emrkit"])
	if code == 0 || !strings.Contains(out, `emrkit/https-port: "abc" is not a port (1-65535)`) || !strings.Contains(out, "dpkg-reconfigure emrkit") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if c.dbDump() != baseDB {
		t.Fatal("a failed configure changed the database")
	}
	props, _ := os.ReadFile(c.path("/usr/share/tomcat9/oscar.properties"))
	if string(props) != chrootProps {
		t.Fatal("a failed configure changed oscar.properties")
	}
	// Fixing the answer and configuring again converges.
	must(t, os.WriteFile(c.path("/tmp/answers"), []byte("emrkit emrkit/https-port string 8443\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/answers")
	c.mustRun("dpkg", "--configure", "-a")
	if _, code := c.run("emrkit", "status"); code != 0 {
		t.Fatal("status not clean after fixing the answer")
	}
}

// TestPurgeWithoutMariaDBOrUFW: the tools a purge would use (MariaDB, ufw, gpg) are gone;
// purge still succeeds, says what it skipped, and removes emrkit's own files.
func TestPurgeWithoutMariaDBOrUFW(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	in := c.installDebs(map[string]string{"emrkit": deb})
	c.mustRun("dpkg", "-i", in["emrkit"])
	c.mustRun("dpkg", "--remove", "emrkit")
	c.mustRun("sh", "-c", "mariadb-admin shutdown && dpkg --purge ufw && dpkg --purge --force-depends pgpgpg gpg")
	out := c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("purge without MariaDB and ufw:\n%s", out)
	if !strings.Contains(out, "skipped") {
		t.Fatalf("purge did not say what it skipped:\n%s", out)
	}
	for _, p := range []string{"/etc/emrkit", "/var/lib/emrkit", "/etc/cron.d/emrkit"} {
		if _, err := os.Stat(c.path(p)); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	props, _ := os.ReadFile(c.path("/usr/share/tomcat9/oscar.properties"))
	if string(props) != chrootProps {
		t.Fatal("oscar.properties not restored")
	}
}
