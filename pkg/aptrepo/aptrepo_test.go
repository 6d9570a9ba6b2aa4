package aptrepo

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// fakeDeb builds a small real .deb with dpkg-deb.
func fakeDeb(t testing.TB, dir, name, version, payload string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), name+"-"+version)
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(root, "usr/share/"+name), 0o755)
	os.WriteFile(filepath.Join(root, "usr/share/"+name, "payload"), []byte(payload), 0o644)
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: t <t@example.invalid>\n"+
		"Depends: debconf (>= 1.5)\nDescription: test package\n Long description.\n .\n Second paragraph.\n", name, version)
	os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(control), 0o644)
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_amd64.deb", name, version))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

func testSigner(t testing.TB) *openpgp.Entity {
	t.Helper()
	ks, err := NewKey("Test repository <repo@example.invalid>")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key.asc"), ks.Private, 0o600)
	os.WriteFile(filepath.Join(dir, "pass"), ks.Passphrase, 0o600)
	e, err := LoadSigner(filepath.Join(dir, "key.asc"), filepath.Join(dir, "pass"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func options(out string, signer *openpgp.Entity, debs ...string) Options {
	return Options{Debs: debs, OutDir: out, Origin: "emrkit", Label: "emrkit", Suite: "bookworm", Codename: "bookworm",
		Component: "main", Date: time.Unix(1764750000, 0), ValidFor: 720 * time.Hour, Signer: signer, URI: "http://127.0.0.1:8000/"}
}

func tree(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			out[strings.TrimPrefix(p, root)] = sha256.Sum256(data)
		}
		return err
	})
	return out
}

func TestBuildIsSignedReproducibleAndKeepsEveryVersion(t *testing.T) {
	debs := t.TempDir()
	a := fakeDeb(t, debs, "emrkit", "0.1.0-1", "one")
	b := fakeDeb(t, debs, "emrkit", "0.10.0-1", "ten")
	c := fakeDeb(t, debs, "emrkit", "0.9.0-1", "nine")
	signer := testSigner(t)
	out1, out2 := filepath.Join(t.TempDir(), "repo"), filepath.Join(t.TempDir(), "repo")
	if err := Build(options(out1, signer, b, a, c)); err != nil {
		t.Fatal(err)
	}
	if err := Build(options(out2, signer, b, a, c, a)); err != nil { // the same file twice is one package
		t.Fatal(err)
	}
	t1, t2 := tree(t, out1), tree(t, out2)
	if len(t1) < 10 || fmt.Sprint(t1) != fmt.Sprint(t2) {
		t.Fatalf("two builds from the same inputs differ:\n%v\n%v", t1, t2)
	}
	packages, _ := os.ReadFile(filepath.Join(out1, "dists/bookworm/main/binary-amd64/Packages"))
	versions := []string{}
	for _, l := range strings.Split(string(packages), "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok {
			versions = append(versions, v)
		}
	}
	if fmt.Sprint(versions) != "[0.1.0-1 0.9.0-1 0.10.0-1]" {
		t.Fatalf("Packages lists %v, want every version in Debian order", versions)
	}
	for _, want := range []string{"Filename: pool/main/e/emrkit/emrkit_0.10.0-1_amd64.deb\n", "Depends: debconf (>= 1.5)\n",
		"Description: test package\n Long description.\n .\n Second paragraph.\n", "SHA256: ", "SHA512: ", "Size: "} {
		if !bytes.Contains(packages, []byte(want)) {
			t.Errorf("Packages lacks %q:\n%s", want, packages)
		}
	}
	release, _ := os.ReadFile(filepath.Join(out1, "dists/bookworm/Release"))
	for _, want := range []string{"Origin: emrkit\n", "Codename: bookworm\n", "Date: Wed, 03 Dec 2025 08:20:00 +0000\n",
		"Valid-Until: Fri, 02 Jan 2026 08:20:00 +0000\n", "Architectures: amd64\n", "Components: main\n", "Acquire-By-Hash: yes\n",
		" main/binary-amd64/Packages.xz\n", "SHA512:\n"} {
		if !bytes.Contains(release, []byte(want)) {
			t.Errorf("Release lacks %q:\n%s", want, release)
		}
	}
	// Debian's gpgv checks both signatures with the keyring servers install.
	keyring := filepath.Join(out1, KeyringFile)
	for _, args := range [][]string{{"InRelease"}, {"Release.gpg", "Release"}} {
		cmdArgs := []string{"--keyring", keyring}
		for _, f := range args {
			cmdArgs = append(cmdArgs, filepath.Join(out1, "dists/bookworm", f))
		}
		if b, err := exec.Command("gpgv", cmdArgs...).CombinedOutput(); err != nil {
			t.Errorf("gpgv %v: %v\n%s", args, err, b)
		}
	}
	if src, _ := os.ReadFile(filepath.Join(out1, SourcesFile)); !bytes.Contains(src, []byte("Signed-By: /etc/apt/keyrings/emrkit.gpg\n")) {
		t.Errorf("sources file:\n%s", src)
	}
}

func TestRefusals(t *testing.T) {
	debs := t.TempDir()
	signer := testSigner(t)
	out := filepath.Join(t.TempDir(), "repo")
	one := fakeDeb(t, debs, "emrkit", "0.3.0-1", "one")
	other := fakeDeb(t, t.TempDir(), "emrkit", "0.3.0-1", "a different build")
	if err := Build(options(out, signer, one, other)); err == nil || !strings.Contains(err.Error(), "are both emrkit 0.3.0-1 (amd64) but differ") {
		t.Errorf("same version, other content: %v", err)
	}
	broken := filepath.Join(debs, "broken.deb")
	data, _ := os.ReadFile(one)
	os.WriteFile(broken, data[:200], 0o644) // the ar header and a cut control member
	if err := Build(options(out, signer, broken)); err == nil || !strings.Contains(err.Error(), "control data unreadable") {
		t.Errorf("unreadable control: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused build left a repository behind")
	}
	// RFC 9580 Ed25519, which gpgv 2.2 cannot check.
	e, err := openpgp.NewEntity("x", "", "x@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEd25519})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSigner(e); err == nil || !strings.Contains(err.Error(), "gpgv 2.2") {
		t.Errorf("Ed25519 (algorithm 27): %v", err)
	}
}

// BenchmarkBuildFiveReleases: the repository of five releases the size of emrkit's .deb
// (4 MB, incompressible like a Go binary).
func BenchmarkBuildFiveReleases(b *testing.B) {
	dir := b.TempDir()
	payload := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{1}).Read(payload)
	var debs []string
	for i := 1; i <= 5; i++ {
		debs = append(debs, fakeDeb(b, dir, "emrkit", fmt.Sprintf("0.%d.0-1", i), string(payload)+fmt.Sprint(i)))
	}
	signer := testSigner(b)
	out := filepath.Join(b.TempDir(), "repo")
	for b.Loop() {
		if err := Build(options(out, signer, debs...)); err != nil {
			b.Fatal(err)
		}
	}
}
