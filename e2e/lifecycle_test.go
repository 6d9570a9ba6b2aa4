package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/internal/testbin"
)

// chroot is a throwaway Debian 12 root made by scripts/chroot.sh; every command runs in
// private mount, pid and network namespaces, so nothing reaches the host.
type chroot struct {
	t    *testing.T
	root string
	// sums are the content hashes tree has taken, by what identifies a file's content
	// without reading it: a fault test compares the whole host hundreds of times.
	sums map[contentKey]string
}

// contentKey identifies a file's content: a write or chmod changes the ctime, which no
// program can set back, and a file replaced by another is another inode.
type contentKey struct {
	ino, size    uint64
	mtime, ctime syscall.Timespec
}

func newChroot(t *testing.T) *chroot {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the chroot lifecycle test needs root (debootstrap, chroot, namespaces); run `make test` as root")
	}
	root := filepath.Join(t.TempDir(), "root")
	script := filepath.Join(testbin.RepoRoot(t), "scripts", "chroot.sh")
	t.Cleanup(func() {
		if out, err := exec.Command("sh", script, "destroy", root).CombinedOutput(); err != nil {
			t.Errorf("destroy chroot: %v\n%s", err, out)
		}
	})
	for _, verb := range []string{"create", "start"} {
		if out, err := exec.Command("sh", script, verb, root).CombinedOutput(); err != nil {
			t.Fatalf("%s chroot: %v\n%s", verb, err, out)
		}
	}
	return &chroot{t: t, root: root, sums: map[contentKey]string{}}
}

// startMariaDB starts the chroot's own MariaDB (it lives as long as the session) as a
// clinic's server would run it: root authenticates over the unix socket.
const startMariaDB = `set -e
install -d -o mysql -g mysql /run/mysqld
(mariadbd --user=mysql --skip-networking >/var/log/mariadbd-test.log 2>&1 &)
for i in $(seq 200); do mariadb -e 'SELECT 1' >/dev/null 2>&1 && exit 0; sleep 0.1; done
cat /var/log/mariadbd-test.log; exit 1`

// demographicRows is the size of the chroot host's patient table: enough of every shape the
// data migrations handle, small enough to dump on every comparison.
const demographicRows = 3000

// oscarHost makes the chroot a fixture OSCAR host: MariaDB with an oscar_15 database
// (security, SecurityArchive, users, and a demographic table of fixture patients), Tomcat 9's
// user and oscar.properties where Tomcat 9's OSCAR keeps it.
func (c *chroot) oscarHost(props string) {
	c.t.Helper()
	c.mustRun("sh", "-c", startMariaDB)
	c.mustRun("useradd", "--system", "--home-dir", "/var/lib/tomcat9", "--create-home", "--shell", "/usr/sbin/nologin", "tomcat")
	sqlText := oscarfixture.SQL(false) + strings.Join(demofixture.Statements(demographicRows, 7), ";\n") + ";\n"
	must(c.t, os.WriteFile(c.path("/tmp/oscar.sql"), []byte(sqlText), 0o644))
	c.mustRun("sh", "-c", "mariadb -e 'CREATE DATABASE oscar_15' && mariadb oscar_15 </tmp/oscar.sql")
	p := c.path("/usr/share/tomcat9/oscar.properties")
	must(c.t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(c.t, os.WriteFile(p, []byte(props), 0o640))
}

// putDeb copies the package at deb into the chroot as /tmp/emrkit.deb.
func (c *chroot) putDeb(deb string) {
	c.t.Helper()
	data, err := os.ReadFile(deb)
	must(c.t, err)
	must(c.t, os.WriteFile(c.path("/tmp/emrkit.deb"), data, 0o644))
}

// dbDump is the fixture database, for comparison with its baseline.
func (c *chroot) dbDump() string {
	c.t.Helper()
	return c.mustRun("mariadb-dump", "--skip-dump-date", "--skip-comments", "--order-by-primary", "--skip-extended-insert", "oscar_15")
}

func (c *chroot) sql(q string) string {
	c.t.Helper()
	return strings.TrimSpace(c.mustRun("mariadb", "-N", "-B", "oscar_15", "-e", q))
}

// run runs argv in the chroot and returns combined output and exit code.
func (c *chroot) run(argv ...string) (string, int) {
	c.t.Helper()
	script := filepath.Join(testbin.RepoRoot(c.t), "scripts", "chroot.sh")
	out, err := exec.Command("sh", append([]string{script, "run", c.root}, argv...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return string(out), 0
}

func (c *chroot) mustRun(argv ...string) string {
	c.t.Helper()
	out, code := c.run(argv...)
	if code != 0 {
		c.t.Fatalf("%v exited %d:\n%s", argv, code, out)
	}
	return out
}

func (c *chroot) path(p string) string { return filepath.Join(c.root, p) }

// treeState describes every file under the host's /etc, /usr, /var, /root and /home — path,
// type, mode, owner and content hash — leaving out dpkg's own database and logs, which record
// that a package came and went.
func (c *chroot) treeState() map[string]string {
	c.t.Helper()
	return c.tree("/etc", "/usr", "/var", "/root", "/home")
}

// tree describes every file under tops as treeState does.
func (c *chroot) tree(tops ...string) map[string]string {
	c.t.Helper()
	state := map[string]string{}
	// The database's files change when it merely runs; it is compared by dump instead.
	skip := []string{"/var/lib/dpkg", "/var/log", "/var/cache/debconf", "/var/cache/apt", "/tmp", "/proc", "/var/lib/mysql"}
	for _, top := range tops {
		filepath.WalkDir(c.path(top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := strings.TrimPrefix(p, c.root)
			for _, s := range skip {
				if rel == s || strings.HasPrefix(rel, s+"/") {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
			switch {
			case fi.Mode().IsRegular():
				key := contentKey{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}
				sum, ok := c.sums[key]
				if !ok {
					data, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					sum = fmt.Sprintf("%x", sha256.Sum256(data))
					c.sums[key] = sum
				}
				desc += " " + sum
			case fi.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				desc += " -> " + target
			}
			state[rel] = desc
			return nil
		})
	}
	return state
}

func diffStates(before, after map[string]string) []string {
	var diffs []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diffs = append(diffs, "removed "+p)
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	sort.Strings(diffs)
	return diffs
}

const chrootProps = "# oscar.properties of a fixture OSCAR host\n# comments and order must survive\nTOTP=0\nbuttons_on_right=true\n# trailing comment\n"

// TestDpkgInstallPurgeRestoresHost installs the built .deb with real dpkg on a fixture OSCAR
// host, checks every step is applied (TOTP=1 with comments kept, 2FA schema and enrolment,
// cron entry), then purges and compares the whole host — files and database — with its
// pre-install baseline.
func TestDpkgInstallPurgeRestoresHost(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	props := c.path("/usr/share/tomcat9/oscar.properties")
	c.putDeb(deb)
	baseUFW := c.mustRun("ufw", "status", "verbose")
	baseline := c.treeState()
	baseDB := c.dbDump()
	if len(baseline) < 1000 {
		t.Fatalf("baseline lists only %d files: the snapshot is not reading the chroot", len(baseline))
	}

	out := c.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	t.Logf("dpkg -i:\n%s", out)
	got, err := os.ReadFile(props)
	must(t, err)
	// TOTP=1 in place, the PGP_* keys appended, every comment and line kept in order.
	want := strings.Replace(chrootProps, "TOTP=0", "TOTP=1", 1) + "PGP_BIN=/usr/bin/pgpgpg\nPGP_CMD=-e\nPGP_KEY="
	if !strings.HasPrefix(string(got), want) || !strings.HasSuffix(string(got), "PGP_ENV=GNUPGHOME=/var/lib/tomcat9/.gnupg\ndemographic.export.encryptedOnly=true\n") {
		t.Fatalf("oscar.properties after install:\n%s", got)
	}
	// OSCAR's own call (pgpgpg as Tomcat, environment only PGP_ENV) encrypts, and it decrypts.
	if out, code := c.run("emrkit", "pgp", "selftest"); code != 0 {
		t.Fatalf("pgp selftest exited %d:\n%s", code, out)
	}
	if fi, _ := os.Stat(c.path("/etc/emrkit/emrkit.yaml")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config not written 0600: %v", fi)
	}
	if got := c.sql("SELECT totp_enabled, LENGTH(totp_secret) FROM security WHERE user_name='oscardoc'"); got != "1\t32" {
		t.Fatalf("oscardoc not enrolled: %q", got)
	}
	if fi, err := os.Stat(c.path("/var/lib/emrkit/totp-enrolments.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("enrolment URIs not left root-only in the state dir: %v %v", fi, err)
	}
	if _, err := os.Stat(c.path("/etc/cron.d/emrkit")); err != nil {
		t.Fatal("cron entry not installed")
	}
	if out, code := c.run("emrkit", "status"); code != 0 {
		t.Fatalf("emrkit status exited %d:\n%s", code, out)
	}
	// The firewall runs in the chroot session's own network namespace.
	ufw := c.mustRun("ufw", "status", "verbose")
	for _, want := range []string{"Status: active", "Default: deny (incoming), allow (outgoing)", "8443/tcp", "3306/tcp                   DENY IN", "# emrkit"} {
		if !strings.Contains(ufw, want) {
			t.Fatalf("ufw status after install lacks %q:\n%s", want, ufw)
		}
	}
	// Re-running the configure step converges without changes.
	out = c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit")
	if !strings.Contains(out, "nothing to change") {
		t.Fatalf("re-run of postinst changed something:\n%s", out)
	}

	out = c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("dpkg --purge:\n%s", out)
	got, err = os.ReadFile(props)
	must(t, err)
	if string(got) != chrootProps {
		t.Fatalf("oscar.properties after purge differs:\n%s", got)
	}
	if got := c.dbDump(); got != baseDB {
		t.Fatalf("database differs from its baseline after purge:\n%s", got)
	}
	if got := c.mustRun("ufw", "status", "verbose"); got != baseUFW {
		t.Fatalf("ufw status after purge:\n%s\nbaseline:\n%s", got, baseUFW)
	}
	backups, _ := filepath.Glob(c.path("/var/backups/emrkit/*"))
	for _, b := range backups {
		if fi, _ := os.Stat(b); fi.Mode().Perm() != 0o600 {
			t.Errorf("backup %s has mode %v, want 0600", b, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(c.path("/var/backups/emrkit")); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("backup dir mode %v, want 0700", fi.Mode().Perm())
	}
	assertOnlyBackupsLeft(t, diffStates(baseline, c.treeState()))
}

// assertOnlyBackupsLeft accepts, as the only difference from the baseline, the database
// backups purge keeps on purpose (root-only), and fails on anything else.
func assertOnlyBackupsLeft(t *testing.T, diffs []string) {
	t.Helper()
	var other []string
	for _, d := range diffs {
		if d == "added /var/backups/emrkit" || strings.HasPrefix(d, "added /var/backups/emrkit/") && (strings.HasSuffix(d, ".sql.gz") || strings.HasSuffix(d, ".sql.gz.pgp")) {
			continue
		}
		other = append(other, d)
	}
	if len(other) > 0 {
		t.Fatalf("host differs from its baseline after purge:\n%s", strings.Join(other, "\n"))
	}
}

// TestCronCyclesPINsInChroot installs the package, starts the chroot's real cron daemon and
// waits for it to run /etc/cron.d/emrkit: oscardoc's PIN must become the code oathtool
// computes for the enrolled secret. This proves the entry's name and job line as cron reads
// them, and sync-pins in cron's environment.
func TestCronCyclesPINsInChroot(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	c.putDeb(deb)
	// Backups every minute, so cron takes one while the test waits.
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte("emrkit emrkit/backup-schedule string * * * * *\n"), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	c.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	c.mustRun("cron")
	secret := c.sql("SELECT totp_secret FROM security WHERE user_name='oscardoc'")
	deadline := time.Now().Add(100 * time.Second)
	for {
		pin := c.sql("SELECT pin FROM security WHERE user_name='oscardoc'")
		now := time.Now().Unix()
		cur := strings.TrimSpace(c.mustRun("oathtool", "--totp", "-b", "-N", fmt.Sprintf("@%d", now), secret))
		prev := strings.TrimSpace(c.mustRun("oathtool", "--totp", "-b", "-N", fmt.Sprintf("@%d", now-30), secret))
		if pin == cur || pin == prev {
			t.Logf("cron wrote the current code into the PIN after %v", time.Until(deadline)*-1+100*time.Second)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cron never cycled the PIN (still %q); /etc/cron.d/emrkit:\n%s", pin, c.mustRun("cat", "/etc/cron.d/emrkit"))
		}
		time.Sleep(2 * time.Second)
	}
	// The backup schedule's entry, run by the real cron, writes an encrypted backup that
	// restores; switching the schedule off removes the entry and nothing else.
	for deadline := time.Now().Add(100 * time.Second); ; time.Sleep(2 * time.Second) {
		if files, _ := filepath.Glob(c.path("/var/backups/emrkit/oscar_15-backup-*.sql.gz.pgp")); len(files) > 0 {
			t.Logf("cron wrote %s", filepath.Base(files[0]))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cron never took a scheduled backup; /etc/cron.d/emrkit-backup:\n%s", c.mustRun("cat", "/etc/cron.d/emrkit-backup"))
		}
	}
	if out, code := c.run("emrkit", "backup", "verify"); code != 0 {
		t.Fatalf("the scheduled backup does not restore: exit %d\n%s", code, out)
	}
	baseline := c.treeState()
	c.mustRun("sh", "-c", "pkill -x cron; echo 'emrkit emrkit/backup-schedule string off' | debconf-set-selections && dpkg-reconfigure -fnoninteractive emrkit")
	var other []string
	for _, d := range diffStates(baseline, c.treeState()) {
		if d != "removed /etc/cron.d/emrkit-backup" && !strings.HasPrefix(d, "changed /etc/emrkit/emrkit.yaml") &&
			!strings.HasPrefix(d, "changed /var/lib/emrkit/") && !strings.HasPrefix(d, "added /var/lib/emrkit/") &&
			!strings.HasPrefix(d, "changed /var/backups/emrkit") && !strings.HasPrefix(d, "added /var/backups/emrkit/") {
			other = append(other, d)
		}
	}
	if _, err := os.Stat(c.path("/etc/cron.d/emrkit-backup")); err == nil || len(other) > 0 {
		t.Fatalf("backup-schedule off: the entry is still there, or more changed: %v", other)
	}
	// Purge stops the job and gives oscardoc their own PIN back.
	c.mustRun("dpkg", "--purge", "emrkit")
	if pin := c.sql("SELECT pin FROM security WHERE user_name='oscardoc'"); pin != "1117" {
		t.Fatalf("after purge oscardoc's PIN is %q, want their own 1117", pin)
	}
}
