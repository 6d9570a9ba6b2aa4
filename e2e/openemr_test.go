package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/openemrfixture"
	"github.com/emrkit/emrkit/internal/testbin"
	"github.com/emrkit/emrkit/pkg/doctor"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/openemr"
)

// apacheLab is Debian's real apache2 serving a fixture OpenEMR tree on 127.0.0.1:8081, in a
// mount and network namespace of the test's own: /etc/apache2, /var/lib/apache2 and Apache's
// run and log directories are private copies, so nothing of the host's Apache is touched,
// and a2enconf, apache2ctl and emrkit inside work on the real paths.
type apacheLab struct {
	t    testing.TB
	pid  int // the namespace's keeper process
	root string
	priv string
}

const labSite = `Alias /openemr %[1]s
<Directory %[1]s>
	AllowOverride FileInfo
	Options -Indexes
	Require all granted
</Directory>
<Directory %[1]s/sites>
	AllowOverride None
</Directory>
# A site-wide grant of the kind admins add: emrkit's denies must still win.
<Location /openemr>
	Require all granted
</Location>
`

func newApacheLab(t testing.TB, root string) *apacheLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the Apache lab needs root (namespaces, mounts); run `make test` as root")
	}
	for _, tool := range []string{"/usr/sbin/apache2", "/usr/sbin/a2enconf", "unshare", "nsenter", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Apache lab needs %s (scripts/deps.sh installs apache2, curl): %v", tool, err)
		}
	}
	l := &apacheLab{t: t, root: root, priv: t.TempDir()}
	must(t, os.WriteFile(filepath.Join(l.priv, "openemr.conf"), []byte(fmt.Sprintf(labSite, root)), 0o644))
	setup := `set -e
priv=$1
ip link set lo up
cp -a /etc/apache2 "$priv/etc"; cp -a /var/lib/apache2 "$priv/lib"
mount --bind "$priv/etc" /etc/apache2; mount --bind "$priv/lib" /var/lib/apache2
# PHP's own configuration (mod_php reads /etc/php/*/apache2) is private too.
mkdir -p "$priv/php"; [ ! -d /etc/php ] || { cp -a /etc/php/. "$priv/php"; mount --bind "$priv/php" /etc/php; }
mkdir -p /var/run/apache2 /var/log/apache2
mount -t tmpfs lab /var/run/apache2; mount -t tmpfs lab /var/log/apache2
printf 'Listen 127.0.0.1:8081\n' >/etc/apache2/ports.conf
printf 'ServerName openemr.lab\n' >/etc/apache2/conf-available/lab-servername.conf
cp "$priv/openemr.conf" /etc/apache2/sites-available/openemr.conf
a2dissite -q 000-default >/dev/null; a2ensite -q openemr >/dev/null; a2enmod -q rewrite >/dev/null; a2enconf -q lab-servername >/dev/null
apache2ctl start
echo ready
exec sleep 100000`
	cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", setup, "sh", l.priv)
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("Apache lab did not start: %q %v", buf, err)
	}
	l.pid = cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); l.code("/openemr/index.php") != 200; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Apache in the lab does not answer: %s", l.sh("tail -5 /var/log/apache2/error.log"))
		}
	}
	return l
}

// run runs argv inside the lab's namespaces.
func (l *apacheLab) run(env []string, argv ...string) result {
	l.t.Helper()
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(l.pid), "-m", "-n", "--"}, argv...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatal(err)
	}
	return r
}

func (l *apacheLab) sh(script string) string {
	l.t.Helper()
	r := l.run(nil, "sh", "-c", script)
	return r.stdout + r.stderr
}

// apacheState is the lab's /etc/apache2, /var/lib/apache2 (a2enconf's record) and /etc/php, file by file.
func (l *apacheLab) apacheState() map[string]string {
	snap := treeSnapshot(l.t, filepath.Join(l.priv, "etc"))
	for k, v := range treeSnapshot(l.t, filepath.Join(l.priv, "lib")) {
		snap["/var/lib/apache2"+k] = v
	}
	for k, v := range treeSnapshot(l.t, filepath.Join(l.priv, "php")) {
		snap["/etc/php"+k] = v
	}
	return snap
}

// code is the HTTP status of GET path over plain HTTP.
func (l *apacheLab) code(path string) int {
	r := l.run(nil, "curl", "-s", "-o", "/dev/null", "--path-as-is", "-w", "%{http_code}", "http://127.0.0.1:8081"+path)
	n, _ := strconv.Atoi(r.stdout)
	return n
}

// codes is the status of every path the acceptance names.
func (l *apacheLab) codes(paths []string) map[string]int {
	out := map[string]int{}
	for _, p := range paths {
		out[p] = l.code("/openemr/" + p)
	}
	return out
}

// treeSnapshot is every file's mode, owner and content hash under dir, for before/after checks.
func treeSnapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			v += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		snap[strings.TrimPrefix(p, dir)] = v
		return nil
	})
	must(t, err)
	return snap
}

func diffSnap(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %q -> %q", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	sort.Strings(d)
	return d
}

// openEMRLabHost is a fixture OpenEMR tree, its database on a private MariaDB, an emrkit
// configuration for it (openemr.* extra), and the Apache lab serving it.
type openEMRLabHost struct {
	dir, root string
	srv       *mariadbtest.Server
	lab       *apacheLab
	emrkit    func(args ...string) result
}

func newOpenEMRLabHost(t testing.TB, tree openemrfixture.Tree, extra string) openEMRLabHost {
	t.Helper()
	h := openEMRLabHost{dir: t.TempDir()}
	// Apache's www-data walks down to the tree.
	must(t, os.Chmod(filepath.Dir(h.dir), 0o755))
	must(t, os.Chmod(h.dir, 0o755))
	h.root = filepath.Join(h.dir, "openemr")
	must(t, tree.Write(h.root))
	h.srv = mariadbtest.Start(t)
	dbc := h.srv.CreateDatabase(t, tree.Database)
	for _, q := range strings.Split(strings.TrimSpace(openemrfixture.GlobalsSQL+openemrfixture.UsersSQL(tree.Major)), ";\n") {
		_, err := h.srv.DB(t, tree.Database).Exec(q)
		must(t, err)
	}
	if extra != "" {
		extra = ", " + extra
	}
	cfgPath := filepath.Join(h.dir, "emrkit.yaml")
	must(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf("profile: openemr\ndatabase: {socket: %s}\nopenemr: {root: %s%s}\nfirewall: {enable: false}\n"+
		"paths: {state_dir: %s/state, backup_dir: %s/backups, cron_file: %s/cron}\n", dbc.Socket, h.root, extra, h.dir, h.dir, h.dir)), 0o600))
	bin := testbin.Emrkit(t, "") // this tree's release
	h.lab = newApacheLab(t, h.root)
	h.emrkit = func(args ...string) result {
		t.Helper()
		return h.lab.run(nil, append([]string{bin, "--config", cfgPath}, args...)...)
	}
	return h
}

// noopThenRevert: a second apply changes nothing, and revert --all puts /etc/apache2, /etc/php
// and a2enmod's state back as apacheBefore has them.
func (h openEMRLabHost) noopThenRevert(t *testing.T, apacheBefore map[string]string) {
	t.Helper()
	if r := h.emrkit("apply"); r.code != 0 || !strings.Contains(r.stdout, "nothing to change") {
		t.Errorf("second apply: %+v", r)
	}
	if r := h.emrkit("revert", "--all"); r.code != 0 {
		t.Fatalf("revert: %+v", r)
	}
	if d := diffSnap(apacheBefore, h.lab.apacheState()); len(d) > 0 {
		t.Errorf("Apache's or PHP's configuration after undo differs: %v", d)
	}
}

// expectDenied checks codes after apply: every denied path 403, every served one 200.
func expectDenied(t *testing.T, codes map[string]int, denied, served []string) {
	t.Helper()
	for _, p := range denied {
		if codes[p] != 403 {
			t.Errorf("after apply: %s answers %d, want 403", p, codes[p])
		}
	}
	for _, p := range served {
		if codes[p] != 200 {
			t.Errorf("after apply: %s answers %d, want 200 (it must keep working)", p, codes[p])
		}
	}
}

// doctorCheck runs emrkit doctor --json in the lab and returns the check id.
func (h openEMRLabHost) doctorCheck(t *testing.T, id string) doctor.Check {
	t.Helper()
	r := h.emrkit("doctor", "--json")
	var rep doctor.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor --json (exit %d): %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	for _, c := range rep.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("doctor has no %s:\n%s", id, r.stdout)
	return doctor.Check{}
}

// TestOpenEMRHardeningUnderRealApache: the fixture OpenEMR served by Debian's apache2 answers
// 200 for a patient document and the setup scripts before `emrkit apply`, 403 after, while
// the login page, the portal, the API and OAuth2 rewrites and the code-set imports keep
// working; `emrkit revert --all` puts back every HTTP answer, file mode and owner, Apache's
// enabled confs and a2enconf's state, and the globals table byte for byte.
func TestOpenEMRHardeningUnderRealApache(t *testing.T) {
	www, err := user.Lookup("www-data")
	must(t, err)
	uid, _ := strconv.Atoi(www.Uid)
	gid, _ := strconv.Atoi(www.Gid)
	h := newOpenEMRLabHost(t, openemrfixture.Tree{Major: 7, Database: "openemr", UID: uid, GID: gid}, "")
	srv, root, l, emrkit := h.srv, h.root, h.lab, h.emrkit

	denied := []string{"sites/default/documents/1/referral.pdf", "sites/default/documents/era/remit.835", "sites/default/sqlconf.php",
		"setup.php", "admin.php", "sql_upgrade.php", "sql_patch.php", "acl_upgrade.php", "ippf_upgrade.php",
		"contrib/util/installScripts/InstallerAuto.php", "sites/default//documents/1/referral.pdf", "./setup.php", "%73etup.php"}
	served := []string{"index.php", "interface/admin.php", "portal/index.php", "portal/patient/provider/list",
		"apis/default/fhir/metadata", "oauth2/default/authorize", "contrib/icd9/load.txt", "contrib/icd10/load.txt", "gacl/admin/index.php"}
	paths := append(append([]string{}, denied...), served...)
	codesBefore := l.codes(paths)
	for _, p := range paths {
		if codesBefore[p] != 200 {
			t.Errorf("before apply: %s answers %d, want 200 (the fixture serves everything)", p, codesBefore[p])
		}
	}
	treeBefore := treeSnapshot(t, root)
	apacheBefore := l.apacheState()
	dbBefore := srv.Dump(t, "openemr")

	r := emrkit("apply")
	if r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	t.Logf("apply:\n%s%s", r.stdout, r.stderr)
	expectDenied(t, l.codes(paths), denied, served)
	for rel, want := range map[string]string{"setup.php": "-rw------- 0:0", "sql_upgrade.php": "-rw------- 0:0",
		"sites/default/sqlconf.php": fmt.Sprintf("-rw-r----- 0:%d", gid)} {
		if got := treeSnapshot(t, filepath.Join(root, rel))[""]; !strings.HasPrefix(got, want+" ") {
			t.Errorf("%s is %q, want %s", rel, got, want)
		}
	}
	for _, doc := range []string{"/sites/default/documents/1/referral.pdf", "/sites/default/documents/logs_and_misc/methods/one"} {
		if now := treeSnapshot(t, root)[doc]; now != treeBefore[doc] {
			t.Errorf("%s changed: %q -> %q (emrkit never touches documents)", doc, treeBefore[doc], now)
		}
	}
	if !strings.Contains(l.sh("ls /etc/apache2/conf-enabled"), "emrkit-openemr.conf") {
		t.Error("emrkit-openemr.conf is not enabled")
	}
	if r := emrkit("apply"); r.code != 0 || !strings.Contains(r.stdout, "nothing to change") {
		t.Errorf("second apply: %+v", r)
	}
	if r := emrkit("status"); r.code != 0 {
		t.Errorf("status after apply: %+v", r)
	}

	r = emrkit("revert", "--all")
	if r.code != 0 {
		t.Fatalf("revert: %+v", r)
	}
	if got := l.codes(paths); fmt.Sprint(got) != fmt.Sprint(codesBefore) {
		t.Errorf("HTTP answers after undo:\n%v\nwant\n%v", got, codesBefore)
	}
	if d := diffSnap(treeBefore, treeSnapshot(t, root)); len(d) > 0 {
		t.Errorf("the tree after undo differs: %v", d)
	}
	if d := diffSnap(apacheBefore, l.apacheState()); len(d) > 0 {
		t.Errorf("Apache's configuration or a2enconf's state after undo differs: %v", d)
	}
	if got := srv.Dump(t, "openemr"); got != dbBefore {
		t.Errorf("database after undo differs:\n%s\nwant\n%s", got, dbBefore)
	}

	// Apache's configuration broken by someone else: emrkit adds nothing to it.
	l.sh("printf 'NoSuchDirective on\\n' >/etc/apache2/conf-enabled/broken.conf")
	r = emrkit("apply")
	if r.code == 0 || !strings.Contains(r.stderr, "fails its test even without emrkit's change") {
		t.Errorf("apply with a broken Apache configuration: %+v", r)
	}
	if strings.Contains(l.sh("ls /etc/apache2/conf-available /etc/apache2/conf-enabled"), "emrkit-openemr") {
		t.Error("emrkit's snippet was written although Apache's configuration failed its test")
	}
	l.sh("rm /etc/apache2/conf-enabled/broken.conf")
	if r := emrkit("revert", "--all"); r.code != 0 {
		t.Fatalf("revert after the broken run: %+v", r)
	}
	if d := diffSnap(treeBefore, treeSnapshot(t, root)); len(d) > 0 {
		t.Errorf("the tree after the second undo differs: %v", d)
	}
}

// TestOpenEMRRedirectToHTTPS: with openemr.https_redirect and an SSL site enabled, plain HTTP
// is sent to HTTPS (but for certbot's challenges), HTTPS still denies the setup scripts and
// serves the login page; undo brings plain HTTP back. Without an SSL site, apply refuses.
func TestOpenEMRRedirectToHTTPS(t *testing.T) {
	h := newOpenEMRLabHost(t, openemrfixture.Tree{Major: 8, Database: "openemr"}, "https_redirect: true")
	l, emrkit, dir := h.lab, h.emrkit, h.dir

	if r := emrkit("apply"); r.code == 0 || !strings.Contains(r.stderr, "no SSL site enabled") {
		t.Fatalf("apply with https_redirect and no SSL site: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "journal.json")); err == nil && strings.Contains(read(t, filepath.Join(dir, "state", "journal.json")), "done") {
		t.Fatal("a refused apply journaled changes")
	}
	l.sh(`set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=openemr.lab -keyout /etc/apache2/lab.key -out /etc/apache2/lab.crt 2>/dev/null
printf 'Listen 127.0.0.1:80\n' >>/etc/apache2/ports.conf
printf 'Listen 127.0.0.1:443\n<VirtualHost 127.0.0.1:443>\n\tSSLEngine on\n\tSSLCertificateFile /etc/apache2/lab.crt\n\tSSLCertificateKeyFile /etc/apache2/lab.key\n\tInclude /etc/apache2/sites-available/openemr.conf\n</VirtualHost>\n' >/etc/apache2/sites-available/openemr-ssl.conf
a2enmod -q ssl >/dev/null; a2ensite -q openemr-ssl >/dev/null; apache2ctl graceful`)
	https := func(path string) int {
		r := l.run(nil, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1"+path)
		n, _ := strconv.Atoi(r.stdout)
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); https("/openemr/index.php") != 200; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the lab's SSL site does not answer: %s", l.sh("tail -5 /var/log/apache2/error.log"))
		}
	}
	if r := emrkit("apply"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	loc := l.run(nil, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://127.0.0.1:8081/openemr/index.php")
	if loc.stdout != "301 https://127.0.0.1:8081/openemr/index.php" {
		t.Errorf("plain HTTP after apply: %q, want a 301 to HTTPS", loc.stdout)
	}
	if c := l.code("/.well-known/acme-challenge/token"); c != 404 {
		t.Errorf("certbot's challenge path answers %d, want 404 (not redirected)", c)
	}
	// Deny first, then redirect: a denied file is 403 on plain HTTP too, never a 301 to it.
	for _, p := range []string{"/openemr/setup.php", "/openemr/sites/default/sqlconf.php", "/openemr/sites/default/documents/1/referral.pdf", "/openemr/contrib/util/x"} {
		if c := l.code(p); c != 403 {
			t.Errorf("plain HTTP %s after apply answers %d, want 403 before any redirect", p, c)
		}
	}
	if c := https("/openemr/setup.php"); c != 403 {
		t.Errorf("setup.php over HTTPS answers %d, want 403", c)
	}
	if c := https("/openemr/index.php"); c != 200 {
		t.Errorf("the login page over HTTPS answers %d, want 200", c)
	}
	// HSTS, because the admin sent HTTP to HTTPS: over HTTPS only.
	if hd := l.sh("curl -skI https://127.0.0.1/openemr/index.php"); !strings.Contains(hd, "Strict-Transport-Security: max-age=31536000") {
		t.Errorf("no HSTS over HTTPS with the redirect on:\n%s", hd)
	}
	if c := h.doctorCheck(t, "openemr.headers"); c.Status != doctor.Pass || !strings.Contains(c.Finding, "HSTS at https://127.0.0.1/openemr/") {
		t.Errorf("doctor's headers with the redirect: %+v", c)
	}
	// Doctor, at the default url (http://127.0.0.1/openemr), follows the redirect and probes
	// both schemes; over HTTPS it trusts the lab's self-signed certificate because Apache's
	// configuration names it, and says so.
	c := h.doctorCheck(t, "openemr.web-denies")
	if c.Status != doctor.Pass || !strings.Contains(c.Finding, "plain HTTP; HTTPS, trusting only the certificate Apache's SSLCertificateFile names") ||
		!strings.Contains(c.Finding, "https://127.0.0.1/openemr/") {
		t.Errorf("doctor with the redirect: %+v", c)
	}
	cfgPath := filepath.Join(dir, "emrkit.yaml")
	must(t, os.WriteFile(cfgPath, []byte(strings.Replace(read(t, cfgPath), "https_redirect: true", "https_redirect: true, url: 'https://127.0.0.1/openemr'", 1)), 0o600))
	if c := h.doctorCheck(t, "openemr.web-denies"); c.Status != doctor.Pass || strings.Contains(c.Finding, "plain HTTP") {
		t.Errorf("doctor with an https url on 127.0.0.1: %+v", c)
	}
	// A certificate Apache does not name is not trusted: the probe fails, it does not pass.
	// (Apache keeps serving the certificate it loaded; the file now names another.)
	l.sh(`cp /etc/apache2/lab.crt /tmp/lab.crt
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other -keyout /tmp/other.key -out /etc/apache2/lab.crt 2>/dev/null`)
	if c := h.doctorCheck(t, "openemr.web-denies"); c.Status == doctor.Pass {
		t.Errorf("doctor trusted a certificate Apache's configuration does not name: %+v", c)
	}
	l.sh("cp /tmp/lab.crt /etc/apache2/lab.crt")
	if r := emrkit("revert", "--all"); r.code != 0 {
		t.Fatalf("revert: %+v", r)
	}
	if c := l.code("/openemr/index.php"); c != 200 {
		t.Errorf("plain HTTP after undo answers %d, want 200", c)
	}
}

// legacySite serves the tree's real directory by its own URL, as Apache does for a versioned
// tree behind a link, with the 2.2-style access block of old vhosts and 4.x install guides on
// both paths: Satisfy Any lets "Allow from all" grant what a Require denies. Enabled as
// zz-legacy, it comes after the lab's own site, as a vhost of its own would.
const legacySite = `Alias /openemr-7.0.3 %[2]s
<Directory %[1]s>
	Options +Indexes +FollowSymLinks
	Order allow,deny
	Allow from all
	Satisfy Any
</Directory>
<Directory %[2]s>
	Options +Indexes +FollowSymLinks
	Order allow,deny
	Allow from all
	Satisfy Any
</Directory>
`

// TestOpenEMRLinkedTreeAndLegacyAccess: the tree is openemr-7.0.3 behind the link openemr
// (the usual way to upgrade), served by both URLs with listings on, and the site grants with
// Order/Allow/Satisfy Any; a sqlconf.php.bak, manifests, .env, sql/, tests/ and the like lie
// in the tree. After apply every denied file and listing is 403 under both URLs while
// OpenEMR's pages (and its help files) stay 200; revert puts every code, mode, owner and
// Apache file back.
func TestOpenEMRLinkedTreeAndLegacyAccess(t *testing.T) {
	h := newOpenEMRLabHost(t, openemrfixture.Tree{Major: 7, Database: "openemr"}, "url: 'http://127.0.0.1:8081/openemr'")
	l, emrkit := h.lab, h.emrkit
	real := h.root + "-7.0.3"
	for rel, body := range map[string]string{"sites/default/sqlconf.php.bak": "<?php $pass = 'secret';", "sites/default/sqlconf.php~": "x",
		"composer.json": "{}", "composer.lock": "{}", ".env": "X=1", "sql/database.sql": "CREATE TABLE x (a int);", "tests/x.php": "x",
		"docker/x.yml": "x", "CHANGELOG.md": "x", "Documentation/INSTALL": "x", "Documentation/help_files/help.php": "help",
		"phpmyadmin/index.php": "x", "interface/main.php.orig": "x", ".git/config": "x"} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(h.root, rel)), 0o755))
		must(t, os.WriteFile(filepath.Join(h.root, rel), []byte(body), 0o644))
	}
	must(t, os.Rename(h.root, real))
	must(t, os.Symlink(filepath.Base(real), h.root))
	must(t, os.WriteFile(filepath.Join(l.priv, "legacy.conf"), []byte(fmt.Sprintf(legacySite, h.root, real)), 0o644))
	l.sh(`cp "` + l.priv + `/legacy.conf" /etc/apache2/sites-available/zz-legacy.conf && a2ensite -q zz-legacy >/dev/null && apache2ctl graceful`)

	denied := []string{"sites/default/documents/1/referral.pdf", "sites/default/sqlconf.php", "setup.php", "admin.php",
		"sql_upgrade.php", "contrib/util/installScripts/InstallerAuto.php", "sites/default//documents/1/referral.pdf", "%73etup.php",
		"sites/default/", "sites/", "sites/default/sqlconf.php.bak", "sites/default/sqlconf.php~", "composer.json", "composer.lock",
		".env", "sql/database.sql", "sql/", "tests/x.php", "docker/x.yml", "CHANGELOG.md", "Documentation/INSTALL",
		"phpmyadmin/index.php", "interface/main.php.orig", ".git/config"}
	served := []string{"index.php", "interface/admin.php", "portal/index.php", "contrib/icd9/load.txt", "Documentation/help_files/help.php", ""}
	codes := func() map[string]int {
		out := map[string]int{}
		for _, prefix := range []string{"/openemr/", "/openemr-7.0.3/"} {
			for _, p := range append(append([]string{}, denied...), served...) {
				out[prefix+p] = l.code(prefix + p)
			}
		}
		return out
	}
	var before map[string]int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if before = codes(); before["/openemr-7.0.3/index.php"] == 200 || time.Now().After(deadline) {
			break
		}
	}
	for p, c := range before {
		if c != 200 {
			t.Errorf("before apply: %s answers %d, want 200 (the fixture serves everything)", p, c)
		}
	}
	// Doctor probes every denied class under both URLs (found in Apache's own configuration)
	// and names a document by its class, never by its name.
	c := h.doctorCheck(t, "openemr.web-denies")
	// 11 classes (6 scripts, contrib/, a document, sqlconf.php, its .bak, a listing) under 2 prefixes.
	if c.Status != doctor.Fail || !strings.Contains(c.Finding, "22 of 22 probes not refused") || strings.Contains(c.Finding, "referral") {
		t.Errorf("doctor before apply: %+v", c)
	}
	t.Logf("doctor before apply: %s", c.Finding)
	treeBefore, apacheBefore := treeSnapshot(t, h.dir+"/"), l.apacheState()

	if r := emrkit("apply"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if c := h.doctorCheck(t, "openemr.web-denies"); c.Status != doctor.Pass ||
		!strings.Contains(c.Finding, "http://127.0.0.1:8081/openemr/, http://127.0.0.1:8081/openemr-7.0.3/") {
		t.Errorf("doctor after apply: %+v", c)
	}
	// 0.7.0's snippet named only the link: the real path served everything, and doctor passed.
	snippet := filepath.Join(l.priv, "etc", "conf-available", openemr.ConfName+".conf")
	ours := read(t, snippet)
	must(t, os.WriteFile(snippet, openemr.ApacheConf([]string{h.root}, false), 0o644))
	l.sh("apache2ctl graceful")
	for deadline := time.Now().Add(10 * time.Second); l.code("/openemr-7.0.3/sites/default/sqlconf.php") != 200 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	// The scripts emrkit locked answer 500 under mod_php (PHP cannot read them), a refusal
	// doctor does not count: only Apache's 403 is proof. The document is among the first named.
	if c := h.doctorCheck(t, "openemr.web-denies"); c.Status != doctor.Fail || !strings.Contains(c.Finding, "/openemr-7.0.3/sites/default/documents/(a document) answers 200") ||
		strings.Contains(c.Finding, "/openemr/sites") {
		t.Errorf("doctor with the link's denies only: %+v", c)
	}
	must(t, os.WriteFile(snippet, []byte(ours), 0o644))
	l.sh("apache2ctl graceful")
	for deadline := time.Now().Add(10 * time.Second); l.code("/openemr-7.0.3/sites/default/sqlconf.php") != 403 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	after := codes()
	for _, prefix := range []string{"/openemr/", "/openemr-7.0.3/"} {
		for _, p := range denied {
			if c := after[prefix+p]; c != 403 {
				t.Errorf("after apply: %s answers %d, want 403", prefix+p, c)
			}
		}
		for _, p := range served {
			if c := after[prefix+p]; c != 200 {
				t.Errorf("after apply: %s answers %d, want 200 (it must keep working)", prefix+p, c)
			}
		}
	}
	if r := emrkit("revert", "--all"); r.code != 0 {
		t.Fatalf("revert: %+v", r)
	}
	if got := codes(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("HTTP answers after undo:\n%v\nwant\n%v", got, before)
	}
	treeAfter := treeSnapshot(t, h.dir+"/")
	for _, snap := range []map[string]string{treeBefore, treeAfter} {
		for k := range snap {
			if strings.HasPrefix(k, "state") || strings.HasPrefix(k, "backups") {
				delete(snap, k) // emrkit's own
			}
		}
	}
	if d := diffSnap(treeBefore, treeAfter); len(d) > 0 {
		t.Errorf("the tree after undo differs: %v", d)
	}
	if d := diffSnap(apacheBefore, l.apacheState()); len(d) > 0 {
		t.Errorf("Apache's configuration after undo differs: %v", d)
	}
}

// TestOpenEMR411UnderRealApache: the seed's era, 4.1.1 (its 4.x scripts, bundled phpMyAdmin,
// ERA files under the site), on real Apache: every denied path 200 before apply and 403
// after, the login page 200; only the three password globals 4.1.1 defines are written
// (password_history as its yes/no), the two it lacks are left alone and named by apply and
// doctor; revert puts the codes and the database back.
func TestOpenEMR411UnderRealApache(t *testing.T) {
	h := newOpenEMRLabHost(t, openemrfixture.Tree{Major: 4, Database: "openemr"}, "url: 'http://127.0.0.1:8081/openemr'")
	l, emrkit := h.lab, h.emrkit
	denied := []string{"setup.php", "sql_upgrade.php", "acl_setup.php", "acl_upgrade.php", "gacl/setup.php", "sl_convert.php",
		"ippf_upgrade.php", "admin.php", "phpmyadmin/index.php", "sites/default/sqlconf.php", "sites/default/documents/1/referral.pdf",
		"sites/default/era/remit.835", "contrib/util/backup_oemr.sh"}
	served := []string{"index.php", "interface/login/login.php", "contrib/icd9/load.txt"}
	paths := append(append([]string{}, denied...), served...)
	before := l.codes(paths)
	for _, p := range paths {
		if before[p] != 200 {
			t.Errorf("before apply: %s answers %d, want 200", p, before[p])
		}
	}
	dbBefore := h.srv.Dump(t, "openemr")
	r := emrkit("apply")
	if r.code != 0 || !strings.Contains(r.stderr, "OpenEMR 4.1.1 does not define gbl_minimum_password_length, password_max_failed_logins") {
		t.Fatalf("apply: %+v", r)
	}
	expectDenied(t, l.codes(paths), denied, served)
	var rows []string
	q, err := h.srv.DB(t, "openemr").Query("SELECT CONCAT(gl_name, '=', gl_value) FROM globals WHERE gl_name LIKE '%password%' ORDER BY gl_name")
	must(t, err)
	for q.Next() {
		var v string
		must(t, q.Scan(&v))
		rows = append(rows, v)
	}
	q.Close()
	got := strings.Join(rows, "\n")
	// gbl_minimum_password_length keeps the fixture's 6 (a row 4.1.1 never reads);
	// password_max_failed_logins stays absent.
	if want := "gbl_minimum_password_length=6\npassword_expiration_days=180\npassword_history=1\nsecure_password=1"; got != want {
		t.Errorf("globals after apply:\n%s\nwant\n%s", got, want)
	}
	if c := h.doctorCheck(t, "openemr.password-policy"); c.Status != doctor.Warn ||
		!strings.Contains(c.Finding, "secure_password, password_history, password_expiration_days at least as strict") ||
		!strings.Contains(c.Finding, "cannot enforce") {
		t.Errorf("doctor's password policy on 4.1.1: %+v", c)
	}
	if c := h.doctorCheck(t, "openemr.web-denies"); c.Status != doctor.Pass {
		t.Errorf("doctor's web denies on 4.1.1: %+v", c)
	}
	if r := emrkit("revert", "--all"); r.code != 0 {
		t.Fatalf("revert: %+v", r)
	}
	if got := l.codes(paths); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("HTTP answers after undo:\n%v\nwant\n%v", got, before)
	}
	if got := h.srv.Dump(t, "openemr"); got != dbBefore {
		t.Errorf("database after undo differs:\n%s\nwant\n%s", got, dbBefore)
	}
}

// labTLS is an admin's older settings, read after Debian's security.conf and before emrkit's zz-emrkit-security: TRACE on, the
// signature with the version, every TLS version and the ciphers TLS 1.1 needs.
const labTLS = "TraceEnable On\nServerTokens Full\nSSLProtocol all\nSSLCipherSuite DEFAULT:@SECLEVEL=0\n"

// TestOpenEMRApacheHardening: with an SSL site on 443 and an admin's TRACE-on, TLS-1.0-on
// settings, Apache before apply names its version, echoes TRACE, sends no security headers
// and accepts TLS 1.1 (doctor FAILs each, curl shows it); after apply the headers are on the
// tree's pages, the UI's pages still load, TRACE is 405, the version is gone and TLS 1.1 is
// refused (doctor PASSes each); revert puts Apache's files, a2enmod's state and every answer back.
func TestOpenEMRApacheHardening(t *testing.T) {
	h := newOpenEMRLabHost(t, openemrfixture.Tree{Major: 7, Database: "openemr"}, "url: 'http://127.0.0.1:8081/openemr'")
	l, emrkit := h.lab, h.emrkit
	must(t, os.WriteFile(filepath.Join(l.priv, "etc", "conf-available", "site-admin-tls.conf"), []byte(labTLS), 0o644))
	l.sh(`set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=openemr.lab -keyout /etc/apache2/lab.key -out /etc/apache2/lab.crt 2>/dev/null
printf 'Listen 127.0.0.1:443\n<VirtualHost 127.0.0.1:443>\n\tSSLEngine on\n\tSSLCertificateFile /etc/apache2/lab.crt\n\tSSLCertificateKeyFile /etc/apache2/lab.key\n\tInclude /etc/apache2/sites-available/openemr.conf\n</VirtualHost>\n' >/etc/apache2/sites-available/openemr-ssl.conf
a2enmod -q ssl >/dev/null; a2ensite -q openemr-ssl >/dev/null; a2enconf -q site-admin-tls >/dev/null; apache2ctl graceful`)
	tls11 := func() string {
		return l.run(nil, "curl", "-sk", "--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT:@SECLEVEL=0", "-o", "/dev/null", "-w", "%{http_code}",
			"https://127.0.0.1/openemr/index.php").stdout
	}
	for deadline := time.Now().Add(10 * time.Second); tls11() != "200"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the lab's SSL site does not answer TLS 1.1: %s", l.sh("tail -5 /var/log/apache2/error.log"))
		}
	}
	headers := func(path string) string {
		return strings.ReplaceAll(l.sh("curl -sI http://127.0.0.1:8081"+path), "\r", "")
	}
	trace := func() string {
		return l.run(nil, "curl", "-s", "-X", "TRACE", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8081/openemr/").stdout
	}
	ids := []string{"apache.version", "apache.trace", "openemr.headers", "apache.tls"}
	doctorSays := func() map[string]doctor.Check {
		out := map[string]doctor.Check{}
		for _, id := range ids {
			out[id] = h.doctorCheck(t, id)
		}
		return out
	}
	if hd := headers("/openemr/no-such-page"); !strings.Contains(hd, "Server: Apache/2.4") || strings.Contains(hd, "X-Frame-Options") {
		t.Fatalf("before apply the lab should show its version and no headers:\n%s", hd)
	}
	if c := trace(); c != "200" {
		t.Fatalf("before apply TRACE answers %s, want 200 (the lab's TraceEnable On)", c)
	}
	for id, c := range doctorSays() {
		if c.Status != doctor.Fail {
			t.Errorf("before apply doctor's %s is %s: %s", id, c.Status, c.Finding)
		}
	}
	apacheBefore := l.apacheState()
	paths := []string{"index.php", "portal/index.php", "interface/admin.php", "setup.php", "no-such-page"}
	codesBefore := l.codes(paths)

	if r := emrkit("apply"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	hd := headers("/openemr/index.php")
	for _, want := range []string{"HTTP/1.1 200", "Server: Apache\n", "X-Content-Type-Options: nosniff", "Referrer-Policy: same-origin", "X-Frame-Options: SAMEORIGIN"} {
		if !strings.Contains(hd, want) {
			t.Errorf("the login page after apply lacks %q:\n%s", want, hd)
		}
	}
	if strings.Contains(hd, "Strict-Transport-Security") {
		t.Errorf("HSTS without openemr.https_redirect:\n%s", hd)
	}
	// The UI's own pages (framed by OpenEMR itself) still load.
	for _, p := range []string{"/openemr/portal/index.php", "/openemr/interface/admin.php"} {
		if c := l.code(p); c != 200 {
			t.Errorf("after apply %s answers %d, want 200", p, c)
		}
	}
	if body := l.sh("curl -s http://127.0.0.1:8081/openemr/no-such-page"); strings.Contains(body, "Server at") || strings.Contains(body, "Apache/2") {
		t.Errorf("the 404 page after apply still signs with the version:\n%s", body)
	}
	if c := trace(); c != "405" {
		t.Errorf("TRACE after apply answers %s, want 405", c)
	}
	if c := tls11(); c == "200" {
		t.Error("TLS 1.1 is still accepted after apply")
	}
	for id, c := range doctorSays() {
		if c.Status != doctor.Pass {
			t.Errorf("after apply doctor's %s is %s: %s", id, c.Status, c.Finding)
		}
	}
	h.noopThenRevert(t, apacheBefore)
	if got := l.codes(paths); fmt.Sprint(got) != fmt.Sprint(codesBefore) {
		t.Errorf("HTTP answers after undo:\n%v\nwant\n%v", got, codesBefore)
	}
	if c := trace(); c != "200" {
		t.Errorf("TRACE after undo answers %s, want the lab's 200 back", c)
	}
	if c := tls11(); c != "200" {
		t.Errorf("TLS 1.1 after undo: %s, want the lab's own setting back", c)
	}
}

// phpSettingsPage prints the settings mod_php runs the page with.
const phpSettingsPage = `<?php
foreach (['max_input_vars', 'post_max_size', 'upload_max_filesize', 'memory_limit', 'session.use_strict_mode',
	'session.cookie_httponly', 'session.cookie_samesite', 'session.cookie_secure'] as $k) {
	echo $k, '=', ini_get($k), "\n";
}
`

// TestOpenEMRPHPUnderModPHP: Debian's mod_php runs a page of the tree that prints its settings.
// Before apply they are Debian's (max_input_vars 1000, no strict sessions) and an admin's own
// memory_limit of 512M; after apply OpenEMR's limits and the session settings hold and the
// admin's 512M is kept (never lowered); revert puts /etc/php and every value back.
func TestOpenEMRPHPUnderModPHP(t *testing.T) {
	sapis, _ := filepath.Glob("/etc/php/*/apache2/conf.d")
	if len(sapis) == 0 {
		t.Fatal("this test needs Debian's mod_php (libapache2-mod-php; scripts/deps.sh installs it)")
	}
	h := newOpenEMRLabHost(t, openemrfixture.Tree{Major: 7, Database: "openemr"}, "url: 'http://127.0.0.1:8081/openemr'")
	l, emrkit := h.lab, h.emrkit
	must(t, os.WriteFile(filepath.Join(h.root, "phpcheck.php"), []byte(phpSettingsPage), 0o644))
	admin := filepath.Join(l.priv, "php", strings.TrimPrefix(sapis[0], "/etc/php/"), "50-clinic.ini")
	must(t, os.WriteFile(admin, []byte("memory_limit = 512M\n"), 0o644))
	l.sh("apache2ctl graceful")
	settings := func() string { return l.sh("curl -s http://127.0.0.1:8081/openemr/phpcheck.php") }
	var before string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if before = settings(); strings.Contains(before, "memory_limit=512M") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"max_input_vars=1000\n", "memory_limit=512M\n", "session.use_strict_mode=0\n"} {
		if !strings.Contains(before, want) {
			t.Fatalf("before apply mod_php's settings lack %q (is PHP running the page?):\n%s", want, before)
		}
	}
	if c := h.doctorCheck(t, "php.settings"); c.Status != doctor.Fail || !strings.Contains(c.Finding, `max_input_vars="1000"`) {
		t.Errorf("doctor before apply: %+v", c)
	}
	apacheBefore := l.apacheState()

	if r := emrkit("apply"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	after := settings()
	for _, want := range []string{"max_input_vars=3000\n", "post_max_size=30M\n", "upload_max_filesize=30M\n", "memory_limit=512M\n",
		"session.use_strict_mode=1\n", "session.cookie_httponly=1\n", "session.cookie_samesite=Lax\n", "session.cookie_secure=0\n"} {
		if !strings.Contains(after, want) {
			t.Errorf("after apply mod_php's settings lack %q:\n%s", want, after)
		}
	}
	if hd := l.sh("curl -sI http://127.0.0.1:8081/openemr/index.php"); strings.Contains(hd, "X-Powered-By") {
		t.Errorf("the login page names PHP:\n%s", hd)
	}
	if c := h.doctorCheck(t, "php.settings"); c.Status != doctor.Pass {
		t.Errorf("doctor after apply: %+v", c)
	}
	h.noopThenRevert(t, apacheBefore)
	if got := settings(); got != before {
		t.Errorf("mod_php's settings after undo:\n%s\nwant\n%s", got, before)
	}
}

// openemrHost makes the chroot a fixture OpenEMR host: MariaDB with OpenEMR's database and its
// globals, the tree in /var/www/openemr owned by www-data, and Apache (installed, stopped).
func (c *chroot) openemrHost() {
	c.t.Helper()
	c.mustRun("sh", "-c", startMariaDB)
	must(c.t, os.WriteFile(c.path("/tmp/globals.sql"), []byte(openemrfixture.GlobalsSQL+openemrfixture.UsersSQL(7)), 0o644))
	c.mustRun("sh", "-c", "mariadb -e 'CREATE DATABASE openemr' && mariadb openemr </tmp/globals.sql")
	must(c.t, (openemrfixture.Tree{Major: 7, Database: "openemr", UID: 33, GID: 33}).Write(c.path("/var/www/openemr")))
}

const openemrPreseed = `emrkit emrkit/profile select openemr
emrkit emrkit/openemr-root string /var/www/openemr
emrkit emrkit/ssh-port string 22
`

// TestDpkgOpenEMRPreseeded: a preseeded unattended install on an OpenEMR host locks the
// scripts and sqlconf.php, enables the Apache snippet (configtest passes), sets the password
// globals and opens 443 — the port debconf defaults to for OpenEMR — not OSCAR's 8443; a
// downgrade to 0.4.1 undoes the OpenEMR steps and keeps the firewall; purge leaves the host
// and its database as they were.
func TestDpkgOpenEMRPreseeded(t *testing.T) {
	debs := map[string]string{"new": buildDeb(t), "old": buildDeb(t, "VERSION=0.4.1")}
	c := newChroot(t)
	c.openemrHost()
	in := c.installDebs(debs)
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte(openemrPreseed), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	baseline := c.treeState()
	dump := func() string {
		return c.mustRun("mariadb-dump", "--skip-dump-date", "--skip-comments", "--order-by-primary", "--skip-extended-insert", "openemr")
	}
	baseDB := dump()
	tree := treeSnapshot(t, c.path("/var/www/openemr"))

	out := c.mustRun("dpkg", "-i", in["new"])
	t.Logf("dpkg -i:\n%s", out)
	for rel, want := range map[string]string{"setup.php": "-rw------- 0:0", "admin.php": "-rw------- 0:0",
		"sites/default/sqlconf.php": "-rw-r----- 0:33"} {
		if got := treeSnapshot(t, c.path("/var/www/openemr/"+rel))[""]; !strings.HasPrefix(got, want+" ") {
			t.Errorf("%s after install: %q, want %s", rel, got, want)
		}
	}
	if _, err := os.Readlink(c.path("/etc/apache2/conf-enabled/emrkit-openemr.conf")); err != nil {
		t.Errorf("the Apache snippet is not enabled: %v", err)
	}
	c.mustRun("apache2ctl", "configtest")
	if got := c.mustRun("mariadb", "-N", "-B", "openemr", "-e", "SELECT gl_value FROM globals WHERE gl_name = 'gbl_minimum_password_length'"); strings.TrimSpace(got) != "12" {
		t.Errorf("minimum password length after install: %q", got)
	}
	ufw := c.mustRun("ufw", "status")
	if !strings.Contains(ufw, "443/tcp") || strings.Contains(ufw, "8443") {
		t.Errorf("ufw after an OpenEMR install opens the wrong HTTPS port:\n%s", ufw)
	}
	if out, code := c.run("emrkit", "status"); code != 0 {
		t.Errorf("status after install exited %d:\n%s", code, out)
	}
	if out := c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit"); !strings.Contains(out, "nothing to change") {
		t.Errorf("reconfigure changed something:\n%s", out)
	}

	out = c.mustRun("dpkg", "-i", in["old"])
	t.Logf("downgrade to 0.4.1:\n%s", out)
	if d := diffSnap(tree, treeSnapshot(t, c.path("/var/www/openemr"))); len(d) > 0 {
		t.Errorf("the OpenEMR tree after the downgrade differs: %v", d)
	}
	if got := dump(); got != baseDB {
		t.Errorf("OpenEMR's database after the downgrade differs:\n%s", got)
	}
	if _, err := os.Lstat(c.path("/etc/apache2/conf-available/emrkit-openemr.conf")); err == nil {
		t.Error("the Apache snippet survived the downgrade")
	}
	if ufw := c.mustRun("ufw", "status"); !strings.Contains(ufw, "443/tcp") {
		t.Errorf("the downgrade took the firewall away:\n%s", ufw)
	}

	c.mustRun("dpkg", "-i", in["new"])
	out = c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("dpkg --purge:\n%s", out)
	if got := dump(); got != baseDB {
		t.Errorf("OpenEMR's database after purge differs:\n%s", got)
	}
	assertOnlyBackupsLeft(t, diffStates(baseline, c.treeState()))
}
