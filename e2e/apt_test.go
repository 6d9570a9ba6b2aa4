package e2e

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ulikunitz/xz"

	"github.com/emrkit/emrkit/pkg/aptrepo"
)

// fleetRepo publishes emrkit's signed repository into the chroot's /srv/repo, where a web
// server on 127.0.0.1:8000 inside the chroot's own network namespace serves it.
type fleetRepo struct {
	c      *chroot
	signer *openpgp.Entity
	debs   map[string]string // version -> .deb on the host
}

func newSigner(t *testing.T) *openpgp.Entity {
	t.Helper()
	ks, err := aptrepo.NewKey("emrkit fleet test <repo@example.invalid>")
	must(t, err)
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "key.asc"), ks.Private, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "pass"), ks.Passphrase, 0o600))
	e, err := aptrepo.LoadSigner(filepath.Join(dir, "key.asc"), filepath.Join(dir, "pass"))
	must(t, err)
	return e
}

// publish builds the repository of versions, dated date and valid for validFor, signed by signer.
func (r *fleetRepo) publish(signer *openpgp.Entity, date time.Time, validFor time.Duration, versions ...string) {
	r.c.t.Helper()
	var debs []string
	for _, v := range versions {
		debs = append(debs, r.debs[v])
	}
	must(r.c.t, aptrepo.Build(aptrepo.Options{Debs: debs, OutDir: r.c.path("/srv/repo"), Origin: "emrkit", Label: "emrkit",
		Suite: "bookworm", Codename: "bookworm", Component: "main", Date: date, ValidFor: validFor, Signer: signer,
		URI: "http://127.0.0.1:8000/"}))
}

// update runs apt-get update from scratch (no lists cached), as a server that never saw the
// repository would.
func (r *fleetRepo) update() (string, int) {
	r.c.t.Helper()
	return r.c.run("sh", "-c", "rm -rf /var/lib/apt/lists/* && apt-get update 2>&1")
}

const fleetPreseed = `emrkit emrkit/totp-users string oscardoc
emrkit emrkit/ssh-port string 22
emrkit emrkit/pgp-mode select generate
`

// unattended-upgrades' origins pattern from the README.
const unattendedConf = `Unattended-Upgrade::Origins-Pattern { "origin=emrkit,codename=bookworm,label=emrkit"; };
`

// TestAptFleet takes a fixture OSCAR host through the fleet's life with real apt over HTTP:
// apt-get update verifies the repository with the shipped keyring and .sources file, a
// preseeded `apt install emrkit` installs and applies, a newly published release arrives with
// `apt upgrade` (and with unattended-upgrades, dry run and real) and applies its steps,
// `apt install emrkit=<older>` downgrades and undoes them, purge restores the host. A tampered
// Packages file, a Release signed by another key and an expired Valid-Until are each refused.
func TestAptFleet(t *testing.T) {
	r := &fleetRepo{signer: newSigner(t), debs: map[string]string{
		"0.1.0-1": buildDeb(t, "VERSION=0.1.0"), "0.2.0-1": buildDeb(t, "VERSION=0.2.0"), "0.3.0-1": buildDeb(t, "VERSION=0.3.0")}}
	c := newChroot(t)
	r.c = c
	c.oscarHost(chrootProps)
	baseDB := c.dbDump()
	baseUFW := c.mustRun("ufw", "status", "verbose")
	props := c.path("/usr/share/tomcat9/oscar.properties")

	start := time.Now()
	r.publish(r.signer, time.Now(), 720*time.Hour, "0.1.0-1", "0.2.0-1")
	t.Logf("repository of 2 releases built in %v", time.Since(start))
	c.mustRun("sh", "-c", "(python3 -m http.server 8000 --bind 127.0.0.1 --directory /srv/repo >/var/log/repo-http.log 2>&1 &) ; "+
		"for i in $(seq 50); do python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8000/emrkit.sources\")' 2>/dev/null && exit 0; sleep 0.1; done; exit 1")
	// What the README tells an admin to install: the keyring and the .sources file; the
	// chroot's own Debian mirror is unreachable from its network namespace.
	c.mustRun("sh", "-c", "mv /etc/apt/sources.list /etc/apt/sources.list.orig && install -d -m 0755 /etc/apt/keyrings && "+
		"install -m 0644 /srv/repo/emrkit.gpg /etc/apt/keyrings/emrkit.gpg && install -m 0644 /srv/repo/emrkit.sources /etc/apt/sources.list.d/emrkit.sources")
	baseline := c.treeState()
	start = time.Now()
	if out, code := r.update(); code != 0 || strings.Contains(out, "W:") || strings.Contains(out, "E:") {
		t.Fatalf("apt-get update against the signed repository: exit %d\n%s", code, out)
	}
	t.Logf("apt-get update took %v", time.Since(start))
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte(fleetPreseed), 0o644))
	c.mustRun("debconf-set-selections", "/tmp/preseed")
	start = time.Now()
	out := c.mustRun("apt-get", "install", "-y", "emrkit")
	t.Logf("apt-get install emrkit took %v:\n%s", time.Since(start), out)
	if v := dpkgVersion(c); v != "0.2.0-1 ii" {
		t.Fatalf("installed %q, want the newest published (0.2.0-1)", v)
	}
	if !strings.Contains(read(t, props), "TOTP=1") || !strings.Contains(c.mustRun("ufw", "status"), "Status: active") {
		t.Fatal("the install from the repository did not apply (TOTP, firewall)")
	}

	// A new release is published: apt upgrade brings it and applies its steps (PGP exports).
	time.Sleep(1100 * time.Millisecond) // a newer Date than the one apt has
	r.publish(r.signer, time.Now(), 720*time.Hour, "0.1.0-1", "0.2.0-1", "0.3.0-1")
	c.mustRun("apt-get", "update")
	out = c.mustRun("apt-get", "upgrade", "-y")
	t.Logf("apt-get upgrade:\n%s", out)
	if v := dpkgVersion(c); v != "0.3.0-1 ii" || !strings.Contains(read(t, props), "PGP_BIN=") {
		t.Fatalf("after apt upgrade: %q\n%s", v, read(t, props))
	}

	// Downgrade through apt: the newer release's steps are undone.
	out = c.mustRun("apt-get", "install", "-y", "--allow-downgrades", "emrkit=0.2.0-1")
	t.Logf("apt-get install emrkit=0.2.0-1:\n%s", out)
	if v := dpkgVersion(c); v != "0.2.0-1 ii" || strings.Contains(read(t, props), "PGP_") || !strings.Contains(read(t, props), "TOTP=1") {
		t.Fatalf("after the downgrade: %q\n%s", v, read(t, props))
	}

	// unattended-upgrades with the README's origins pattern picks the release up.
	must(t, os.WriteFile(c.path("/etc/apt/apt.conf.d/51emrkit-unattended"), []byte(unattendedConf), 0o644))
	dry := c.mustRun("unattended-upgrade", "--dry-run", "--debug")
	if !strings.Contains(dry, "emrkit") || !strings.Contains(dry, "Packages that will be upgraded: emrkit") {
		t.Fatalf("unattended-upgrade --dry-run does not pick emrkit:\n%s", dry)
	}
	if v := dpkgVersion(c); v != "0.2.0-1 ii" {
		t.Fatalf("the dry run changed the installed version: %q", v)
	}
	c.mustRun("unattended-upgrade", "--debug")
	if v := dpkgVersion(c); v != "0.3.0-1 ii" || !strings.Contains(read(t, props), "PGP_BIN=") {
		t.Fatalf("after unattended-upgrade: %q", v)
	}

	out = c.mustRun("apt-get", "purge", "-y", "emrkit")
	t.Logf("apt-get purge:\n%s", out)
	if read(t, props) != chrootProps || c.dbDump() != baseDB || c.mustRun("ufw", "status", "verbose") != baseUFW {
		t.Fatal("purge did not restore oscar.properties, the database and the firewall")
	}
	// The host is as before but for apt's own state (its lists; the empty sources.list apt's
	// tools leave where the test moved the Debian mirror's away), the unattended-upgrades
	// drop-in the test added, and the backups purge keeps.
	var left []string
	for _, d := range diffStates(baseline, c.treeState()) {
		path := d[strings.Index(d, " /")+1:]
		if !strings.HasPrefix(path, "/var/lib/apt/") && !strings.HasPrefix(path, "/var/lib/unattended-upgrades") &&
			path != "/etc/apt/sources.list" && !strings.HasPrefix(path, "/etc/apt/apt.conf.d/51emrkit-unattended") {
			left = append(left, d)
		}
	}
	assertOnlyBackupsLeft(t, left)

	// apt refuses: a tampered Packages file (every copy apt may fetch: plain, .gz, .xz and
	// their by-hash names), a Release signed by another key, and an expired Valid-Until.
	r.publish(r.signer, time.Now(), 720*time.Hour, "0.1.0-1", "0.2.0-1", "0.3.0-1")
	tamperIndex(t, c.path("/srv/repo/dists/bookworm/main/binary-amd64"))
	tamper := func(what string, want ...string) {
		t.Helper()
		out, code := r.update()
		if code == 0 {
			t.Errorf("%s: apt-get update succeeded:\n%s", what, out)
			return
		}
		for _, w := range want {
			if strings.Contains(out, w) {
				t.Logf("%s refused: %s", what, w)
				return
			}
		}
		t.Errorf("%s: apt-get update failed, but not as expected (%q):\n%s", what, want, out)
	}
	// apt checks the size first, then the hash: either refusal is the signed Release at work.
	tamper("a tampered Packages file", "Hash Sum mismatch", "File has unexpected size")

	r.publish(newSigner(t), time.Now(), 720*time.Hour, "0.1.0-1", "0.2.0-1", "0.3.0-1")
	tamper("a Release signed by another key", "NO_PUBKEY", "is not signed")

	r.publish(r.signer, time.Now().Add(-48*time.Hour), time.Hour, "0.1.0-1", "0.2.0-1", "0.3.0-1")
	tamper("an expired Valid-Until", "is expired")

	r.publish(r.signer, time.Now(), 720*time.Hour, "0.1.0-1", "0.2.0-1", "0.3.0-1")
	if out, code := r.update(); code != 0 {
		t.Fatalf("the honest repository again: exit %d\n%s", code, out)
	}
}

// tamperIndex points the first package of the Packages index of dir at another file (one
// digit of its SHA256, the index's size unchanged), in every form and under every name apt
// may fetch it by.
func tamperIndex(t *testing.T, dir string) {
	t.Helper()
	plain, err := os.ReadFile(filepath.Join(dir, "Packages"))
	must(t, err)
	evil := bytes.Clone(plain)
	i := bytes.Index(evil, []byte("\nSHA256: ")) + len("\nSHA256: ")
	evil[i] = "01"[map[bool]int{true: 1}[evil[i] == '0']]
	var gz, xzd bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(evil)
	must(t, zw.Close())
	xw, err := xz.NewWriter(&xzd)
	must(t, err)
	xw.Write(evil)
	must(t, xw.Close())
	files, _ := filepath.Glob(filepath.Join(dir, "by-hash", "*", "*"))
	for _, f := range append(files, filepath.Join(dir, "Packages"), filepath.Join(dir, "Packages.gz"), filepath.Join(dir, "Packages.xz")) {
		data, err := os.ReadFile(f)
		must(t, err)
		switch {
		case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			data = gz.Bytes()
		case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
			data = xzd.Bytes()
		default:
			data = evil
		}
		must(t, os.WriteFile(f, data, 0o644))
	}
}
