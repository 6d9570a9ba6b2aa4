package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/emrkit/emrkit/internal/testbin"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/doctor"
)

// doctorRun runs emrkit doctor --json in the chroot, validates the output against the
// schema the package ships, and returns the report and the exit code.
func doctorRun(t *testing.T, c *chroot, bin string, args ...string) (doctor.Report, int) {
	t.Helper()
	out, code := c.run(append([]string{"sh", "-c", `"$0" "$@" 2>/dev/null`, bin, "doctor", "--json"}, args...)...)
	schema, err := jsonschema.UnmarshalJSON(bytes.NewReader(doctor.Schema))
	must(t, err)
	comp := jsonschema.NewCompiler()
	must(t, comp.AddResource("doctor.schema.json", schema))
	sch, err := comp.Compile("doctor.schema.json")
	must(t, err)
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("doctor --json is not JSON (exit %d):\n%s", code, out)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("doctor --json does not follow the shipped schema: %v\n%s", err, out)
	}
	var r doctor.Report
	must(t, json.Unmarshal([]byte(out), &r))
	readmeMapsSafeguards(t, r)
	if want := map[bool]int{true: 3, false: 0}[r.Failing()]; code != want {
		t.Fatalf("doctor exited %d with failing=%v", code, r.Failing())
	}
	return r, code
}

// readmeMapsSafeguards checks the README's HIPAA table: each check of r is in the row of its
// safeguard.
func readmeMapsSafeguards(t *testing.T, r doctor.Report) {
	t.Helper()
	rows := map[string]string{}
	for _, line := range strings.Split(read(t, filepath.Join(testbin.RepoRoot(t), "README.md")), "\n") {
		if cells := strings.Split(line, " | "); len(cells) == 2 && strings.HasPrefix(cells[0], "| 164.3") {
			rows[strings.TrimPrefix(cells[0], "| ")] = cells[1]
		}
	}
	for _, c := range r.Checks {
		if !strings.Contains(rows[c.Safeguard], "`"+c.ID+"`") {
			t.Errorf("README's HIPAA table does not put %s under %q", c.ID, c.Safeguard)
		}
	}
}

func statuses(r doctor.Report) map[string]doctor.Status {
	m := map[string]doctor.Status{}
	for _, c := range r.Checks {
		m[c.ID] = c.Status
	}
	return m
}

// changed lists the checks whose status differs between two runs.
func changed(a, b map[string]doctor.Status) []string {
	var d []string
	for id, s := range b {
		if a[id] != s {
			d = append(d, fmt.Sprintf("%s %s->%s", id, a[id], s))
		}
	}
	sort.Strings(d)
	return d
}

func table(r doctor.Report) string {
	var b bytes.Buffer
	r.Table(&b, false)
	return b.String()
}

// TestDoctorOnOSCARHost: on the fixture OSCAR host doctor lists the expected failures before
// the package is installed, passes every control once it is (with a backup taken and proven),
// and each injected fault flips exactly its own check.
func TestDoctorOnOSCARHost(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	bin := "/tmp/emrkit-doctor"
	data, err := os.ReadFile(testbin.Emrkit(t, "0.5.0-1"))
	must(t, err)
	must(t, os.WriteFile(c.path(bin), data, 0o755))

	before, code := doctorRun(t, c, bin)
	t.Logf("doctor before apply (exit %d):\n%s", code, table(before))
	st := statuses(before)
	for _, id := range []string{"oscar.totp", "oscar.enrolled", "oscar.pin-job", "oscar.pgp", "firewall.active", "backup.recent", "backup.restore-test"} {
		if st[id] != doctor.Fail {
			t.Errorf("before apply %s is %s, want FAIL", id, st[id])
		}
	}

	c.installDebs(map[string]string{"emrkit": deb})
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte("emrkit emrkit/totp-users string oscardoc nurse doc2\nemrkit emrkit/ssh-port string 22\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	c.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	c.mustRun("emrkit", "backup", "--encrypt")
	c.mustRun("emrkit", "backup", "verify")
	fresh := func() { c.mustRun("emrkit", "2fa", "sync-pins") }
	fresh()
	// The chroot runs no sshd: port 22 is allowed, but no one could log in by it.
	if r, _ := doctorRun(t, c, "/usr/bin/emrkit"); statuses(r)["firewall.ssh"] != doctor.Warn {
		t.Errorf("firewall.ssh with nothing listening on 22 is %s, want WARN:\n%s", statuses(r)["firewall.ssh"], table(r))
	}
	c.mustRun("sh", "-c", sshdStandIn)
	after, _ := doctorRun(t, c, "/usr/bin/emrkit")
	t.Logf("doctor after apply (%.2fs):\n%s", after.Seconds, table(after))
	good := statuses(after)
	for id, s := range good {
		if want := hostDefaults[id]; want == "" && s != doctor.Pass || want != "" && s != want {
			t.Errorf("after apply %s is %s", id, s)
		}
	}
	if after.Passed != after.Applicable || after.Skipped != 0 {
		t.Errorf("after apply: %d of %d pass, %d skipped", after.Passed, after.Applicable, after.Skipped)
	}

	newest := func() string {
		f, ok, err := backup.Newest(c.path("/var/backups/emrkit"), "oscar_15", backup.ManualLabel)
		if err != nil || !ok {
			t.Fatalf("newest backup: %v %v", ok, err)
		}
		return f.Path
	}
	for _, f := range []struct {
		check          string
		inject, repair string
	}{
		{"oscar.enrolled", "mariadb oscar_15 -e \"UPDATE security SET totp_enabled = 0 WHERE user_name = 'nurse'\"",
			"mariadb oscar_15 -e \"UPDATE security SET totp_enabled = 1 WHERE user_name = 'nurse'\""},
		{"oscar.pin-job", "mv /etc/cron.d/emrkit /tmp/pin-job", "mv /tmp/pin-job /etc/cron.d/emrkit"},
		{"firewall.listeners", "(nc -lk 0.0.0.0 3306 >/dev/null 2>&1 &); sleep 0.5; " +
			"for n in $(ufw status numbered | grep '3306/tcp.*DENY' | sed 's/^\\[ *\\([0-9]*\\)\\].*/\\1/' | sort -rn); do ufw --force delete $n; done",
			"pkill -f 'nc -lk 0.0.0.0 330[6]'; emrkit apply"},
		{"mariadb.anonymous", "mariadb -e \"CREATE USER ''@'localhost'\"", "mariadb -e \"DROP USER ''@'localhost'\""},
	} {
		c.mustRun("sh", "-c", f.inject)
		fresh()
		r, _ := doctorRun(t, c, "/usr/bin/emrkit")
		if d := changed(good, statuses(r)); len(d) != 1 || !strings.HasPrefix(d[0], f.check+" PASS->FAIL") {
			t.Errorf("fault for %s flipped %v:\n%s", f.check, d, table(r))
		} else {
			t.Logf("fault for %s: %s", f.check, d[0])
		}
		c.mustRun("sh", "-c", f.repair)
		fresh()
		if r, _ := doctorRun(t, c, "/usr/bin/emrkit"); len(changed(good, statuses(r))) != 0 {
			t.Fatalf("after repairing %s: %v\n%s", f.check, changed(good, statuses(r)), table(r))
		}
	}

	// A PIN the cycle has not rewritten (no TOTP code has 4 digits): the check compares it
	// with the code of the secret in the column, which matches the digest emrkit journaled.
	fresh()
	c.mustRun("mariadb", "oscar_15", "-e", "UPDATE security SET pin = '0000' WHERE user_name = 'nurse'")
	if r, _ := doctorRun(t, c, "/usr/bin/emrkit"); !slices.Equal(changed(good, statuses(r)), []string{"oscar.pins-fresh PASS->FAIL"}) {
		t.Errorf("a stale PIN flipped %v:\n%s", changed(good, statuses(r)), table(r))
	}
	fresh()
	if r, _ := doctorRun(t, c, "/usr/bin/emrkit"); len(changed(good, statuses(r))) != 0 {
		t.Fatalf("after sync-pins: %v\n%s", changed(good, statuses(r)), table(r))
	}

	// A 3-day-old newest backup.
	name := newest()
	old := filepath.Join(filepath.Dir(name), strings.Replace(filepath.Base(name),
		mustParse(t, name).Time.Format("20060102T150405.000Z"), time.Now().UTC().Add(-72*time.Hour).Format("20060102T150405.000Z"), 1))
	must(t, os.Rename(name, old))
	r, _ := doctorRun(t, c, "/usr/bin/emrkit")
	if d := changed(good, statuses(r)); len(d) != 1 || d[0] != "backup.recent PASS->FAIL" {
		t.Errorf("a 3-day-old backup flipped %v:\n%s", d, table(r))
	}
	must(t, os.Rename(old, name))

	// The newest backup with its last KB cut off: the restore test fails.
	c.mustRun("truncate", "-s", "-1024", strings.TrimPrefix(name, c.root))
	if out, code := c.run("emrkit", "backup", "verify"); code != 3 || !strings.Contains(out, "FAILED") {
		t.Errorf("verify of a cut backup: exit %d\n%s", code, out)
	}
	fresh()
	r, _ = doctorRun(t, c, "/usr/bin/emrkit")
	if d := changed(good, statuses(r)); len(d) != 1 || d[0] != "backup.restore-test PASS->FAIL" {
		t.Errorf("a cut backup flipped %v:\n%s", d, table(r))
	}

	// As a user other than root, the package's 0600 config cannot be read: doctor says so and
	// checks nothing (0.6.0 checked the default paths instead, which were not this host's).
	out, code := c.run("runuser", "-u", "nobody", "--", "/usr/bin/emrkit", "doctor")
	if code != 1 || !strings.Contains(out, "cannot read /etc/emrkit/emrkit.yaml (permission denied") || strings.Contains(out, "SKIP") {
		t.Errorf("doctor as nobody, config 0600: exit %d\n%s", code, out)
	}
	// Given a config it can read, what it cannot read is skipped, and said so.
	c.mustRun("install", "-m", "0644", "/etc/emrkit/emrkit.yaml", "/tmp/emrkit-readable.yaml")
	out, _ = c.run("runuser", "-u", "nobody", "--", "/usr/bin/emrkit", "doctor", "--config", "/tmp/emrkit-readable.yaml")
	if !strings.Contains(out, "not checked: run as root to check them") || !strings.Contains(out, "SKIP") {
		t.Errorf("doctor as nobody:\n%s", out)
	}
	t.Logf("doctor as nobody:\n%s", out)
	c.mustRun("rm", "/tmp/emrkit-readable.yaml")
}

// hostDefaults are the warnings emrkit reports and never changes on its own: Debian's MariaDB
// as installed (LOAD DATA LOCAL on, no secure_file_priv, host names resolved), and backups that
// stay on the server until backup.offsite names a repository.
var hostDefaults = map[string]doctor.Status{"mariadb.local-infile": doctor.Warn, "mariadb.secure-file-priv": doctor.Warn,
	"mariadb.skip-name-resolve": doctor.Warn, "offsite.recent": doctor.Warn}

// sshdStandIn listens on the chroot's port 22, as sshd would (firewall.ssh wants a listener).
const sshdStandIn = "(nc -lk 0.0.0.0 22 >/dev/null 2>&1 &); for i in $(seq 50); do grep -q ':0016 00000000:0000 0A' /proc/net/tcp && exit 0; sleep 0.1; done; exit 1"

func mustParse(t *testing.T, path string) backup.File {
	t.Helper()
	f, ok := backup.Parse(path)
	if !ok {
		t.Fatalf("%s is not a backup name", path)
	}
	return f
}

// TestDoctorOnOpenEMRHost: on the fixture OpenEMR host, served by the chroot's Apache, doctor
// fails the scripts, sqlconf.php and Apache's answers before the package is installed and
// passes them after; a world-readable sqlconf.php flips exactly its check. Backups of an
// OpenEMR host are not encrypted (no export key): a warning, not a failure.
func TestDoctorOnOpenEMRHost(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.openemrHost()
	must(t, os.WriteFile(c.path("/etc/apache2/conf-available/openemr-site.conf"),
		[]byte(fmt.Sprintf(labSite, "/var/www/openemr")), 0o644))
	c.mustRun("sh", "-c", "a2enconf -q openemr-site && a2enmod -q rewrite && echo 'ServerName openemr.test' >/etc/apache2/conf-enabled/zz-name.conf && apache2ctl start")
	bin := "/tmp/emrkit-doctor"
	data, err := os.ReadFile(testbin.Emrkit(t, "0.5.0-1"))
	must(t, err)
	must(t, os.WriteFile(c.path(bin), data, 0o755))

	before, _ := doctorRun(t, c, bin, "--profile", "openemr")
	t.Logf("doctor --profile openemr before apply:\n%s", table(before))
	st := statuses(before)
	for _, id := range []string{"openemr.scripts", "openemr.sqlconf", "openemr.web-denies", "openemr.password-policy", "firewall.active",
		"apache.version", "openemr.headers"} {
		if st[id] != doctor.Fail {
			t.Errorf("before apply %s is %s, want FAIL", id, st[id])
		}
	}
	c.installDebs(map[string]string{"emrkit": deb})
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte(openemrPreseed), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	c.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	c.mustRun("emrkit", "backup")
	c.mustRun("emrkit", "backup", "verify")
	c.mustRun("sh", "-c", sshdStandIn)
	after, code := doctorRun(t, c, "/usr/bin/emrkit")
	t.Logf("doctor after apply (exit %d, %.2fs):\n%s", code, after.Seconds, table(after))
	good := statuses(after)
	for id, s := range good {
		// The chroot's Apache has no SSL site and no mod_php: doctor says so; OpenEMR's own
		// defaults (7200 s idle, 100 tries an address) and a user without MFA are warnings.
		want := map[string]doctor.Status{"backup.encrypted": doctor.Warn, "apache.tls": doctor.Warn, "openemr.mfa": doctor.Warn,
			"openemr.idle-logoff": doctor.Warn, "openemr.ip-lockout": doctor.Warn, "php.settings": doctor.Warn}[id]
		if want == "" {
			want = hostDefaults[id]
		}
		if want == "" && s != doctor.Pass || want != "" && s != want {
			t.Errorf("after apply %s is %s", id, s)
		}
	}
	for _, c := range after.Checks {
		if c.ID == "mariadb.root-account" && !strings.Contains(c.Finding, "by unix_socket only") {
			t.Errorf("Debian's root@localhost: %q", c.Finding)
		}
	}
	c.mustRun("chmod", "0644", "/var/www/openemr/sites/default/sqlconf.php")
	r, _ := doctorRun(t, c, "/usr/bin/emrkit")
	if d := changed(good, statuses(r)); len(d) != 1 || d[0] != "openemr.sqlconf PASS->FAIL" {
		t.Errorf("a world-readable sqlconf.php flipped %v:\n%s", d, table(r))
	}
}
