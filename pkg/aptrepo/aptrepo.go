// Package aptrepo owns emrkit's signed APT repository: from a set of .debs it writes the
// layout Debian's apt reads (dists/<suite>/main/binary-<arch>/Packages, .gz and .xz, their
// by-hash copies, Release with SHA256 and SHA512 lists, InRelease and Release.gpg), a pool/
// holding every release given (a fleet downgrades with `apt install emrkit=<older>`), and
// what a server adds: the binary public keyring for /etc/apt/keyrings and a deb822 .sources
// file with Signed-By. Only the build tool (emrkit-deb) links it.
//
// The output is a function of its inputs: the Date is given (SOURCE_DATE_EPOCH), every file
// is written in a fixed order with no timestamps, and signatures are deterministic (EdDSA or
// RSA, created at the Date, without go-crypto's random salt notation), so two builds from the
// same .debs and key are byte-identical. Keys gpgv 2.2 (bookworm) cannot check — RFC 9580
// Ed25519 (algorithm 27), v6 keys — are refused.
package aptrepo

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"
	"pault.ag/go/debian/control"
	debfile "pault.ag/go/debian/deb"

	"github.com/emrkit/emrkit/pkg/deb"
	"github.com/emrkit/emrkit/pkg/debversion"
	"github.com/emrkit/emrkit/pkg/pgp"
)

// Options are a repository's inputs.
type Options struct {
	Debs   []string
	OutDir string
	// Origin, Label and Codename identify the repository to apt and unattended-upgrades; apt
	// refuses an update that changes them, so they must stay the same forever.
	Origin, Label, Suite, Codename, Component string
	// Date is the Release's Date; ValidFor how long apt accepts it (Valid-Until).
	Date     time.Time
	ValidFor time.Duration
	// Signer signs Release (its private key unlocked).
	Signer *openpgp.Entity
	// URI is where servers fetch the repository, for the .sources file.
	URI string
}

// Files a server installs, written beside dists/ and pool/.
const (
	KeyringFile = "emrkit.gpg"     // -> /etc/apt/keyrings/emrkit.gpg
	SourcesFile = "emrkit.sources" // -> /etc/apt/sources.list.d/emrkit.sources
	KeyringPath = "/etc/apt/keyrings/emrkit.gpg"
)

// pkg is one .deb as the index lists it.
type pkg struct {
	para     control.Paragraph
	name     string
	version  string
	arch     string
	src      string // where it was read from
	pool     string // Filename, relative to the repository root
	size     int64
	sha256   string
	sha512   string
	contents []byte
}

// Build writes the repository into o.OutDir, replacing what was there.
func Build(o Options) error {
	if err := o.check(); err != nil {
		return err
	}
	pkgs, err := readDebs(o.Debs, o.Component)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(o.OutDir)), ".repo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := write(tmp, o, pkgs); err != nil {
		return err
	}
	// Swap the new tree in; a server fetching meanwhile gets the old or the new one.
	old := tmp + ".old"
	if err := os.Rename(o.OutDir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, o.OutDir); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

func (o Options) check() error {
	switch {
	case len(o.Debs) == 0:
		return errors.New("no .deb given")
	case o.Signer == nil || o.Signer.PrivateKey == nil:
		return errors.New("no signing key given (--key, --passphrase-file)")
	case o.ValidFor <= 0:
		return fmt.Errorf("valid-for %v: give a positive duration, e.g. 720h", o.ValidFor)
	}
	for field, v := range map[string]string{"origin": o.Origin, "label": o.Label, "suite": o.Suite, "codename": o.Codename, "component": o.Component} {
		if v == "" || strings.ContainsAny(v, "\n\r:/") {
			return fmt.Errorf("%s %q: give a single word", field, v)
		}
	}
	return CheckSigner(o.Signer)
}

// CheckSigner refuses keys bookworm's gpgv cannot verify.
func CheckSigner(e *openpgp.Entity) error {
	k := e.PrimaryKey
	switch {
	case k.Version != 4:
		return fmt.Errorf("signing key is a version %d key; gpgv 2.2 (Debian 12) checks version 4 keys only", k.Version)
	case k.PubKeyAlgo == packet.PubKeyAlgoEd25519 || k.PubKeyAlgo == packet.PubKeyAlgoEd448:
		return errors.New("signing key uses RFC 9580 EdDSA, which gpgv 2.2 (Debian 12) rejects; use legacy EdDSA (emrkit-deb repo-key) or RSA of 3072 bits or more")
	case k.PubKeyAlgo == packet.PubKeyAlgoRSA || k.PubKeyAlgo == packet.PubKeyAlgoRSASignOnly:
		if n, _ := k.BitLength(); n < 3072 {
			return fmt.Errorf("signing key is RSA-%d; apt from Debian 13 on wants 3072 bits or more", n)
		}
	case k.PubKeyAlgo != packet.PubKeyAlgoEdDSA:
		return fmt.Errorf("signing key algorithm %d: use legacy EdDSA or RSA (ECDSA signatures are not reproducible)", k.PubKeyAlgo)
	}
	return nil
}

// readDebs reads each .deb's control data and hashes; the same package and version given
// twice must be the same file.
func readDebs(paths []string, component string) ([]pkg, error) {
	var out []pkg
	seen := map[string]int{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		d, err := debfile.Load(bytes.NewReader(data), p)
		if err != nil {
			return nil, fmt.Errorf("%s: control data unreadable (%v); rebuild the package", p, err)
		}
		d.Close()
		para := d.Control.Paragraph
		name, ver, arch := para.Values["Package"], para.Values["Version"], para.Values["Architecture"]
		if name == "" || ver == "" || arch == "" {
			return nil, fmt.Errorf("%s: control data lacks Package, Version or Architecture; rebuild the package", p)
		}
		if _, err := debversion.Parse(ver); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
		k := pkg{para: para, name: name, version: ver, arch: arch, src: p, size: int64(len(data)), contents: data,
			sha256: hex.EncodeToString(s256[:]), sha512: hex.EncodeToString(s512[:])}
		k.pool = poolPath(component, para, name, ver, arch)
		key := name + " " + ver + " " + arch
		if i, ok := seen[key]; ok {
			if out[i].sha256 != k.sha256 {
				return nil, fmt.Errorf("%s and %s are both %s %s (%s) but differ; a version is published once — give it a new version", out[i].src, p, name, ver, arch)
			}
			continue
		}
		seen[key] = len(out)
		out = append(out, k)
	}
	return out, nil
}

// poolPath is Debian's pool/<component>/<prefix>/<source>/<file> layout.
func poolPath(component string, para control.Paragraph, name, ver, arch string) string {
	src, _, _ := strings.Cut(para.Values["Source"], " ")
	if src == "" {
		src = name
	}
	prefix := src[:1]
	if strings.HasPrefix(src, "lib") && len(src) > 3 {
		prefix = src[:4]
	}
	if _, v, ok := strings.Cut(ver, ":"); ok {
		ver = v // the epoch is not part of file names
	}
	return filepath.ToSlash(filepath.Join("pool", component, prefix, src, fmt.Sprintf("%s_%s_%s.deb", name, ver, arch)))
}

// indexFile is one file Release lists.
type indexFile struct {
	path string // relative to dists/<suite>
	data []byte
}

func write(root string, o Options, pkgs []pkg) error {
	for _, p := range pkgs {
		if err := writeFile(filepath.Join(root, p.pool), p.contents); err != nil {
			return err
		}
	}
	var archs []string
	for _, p := range pkgs {
		if p.arch != "all" && !slices.Contains(archs, p.arch) {
			archs = append(archs, p.arch)
		}
	}
	if len(archs) == 0 {
		return errors.New("only Architecture: all packages; give at least one for a real architecture")
	}
	sort.Strings(archs)
	suite := filepath.Join(root, "dists", o.Suite)
	var files []indexFile
	for _, arch := range archs {
		text, err := packagesIndex(pkgs, arch)
		if err != nil {
			return err
		}
		gz, err := deb.Gzip(text)
		if err != nil {
			return err
		}
		xzd, err := xzed(text)
		if err != nil {
			return err
		}
		dir := o.Component + "/binary-" + arch
		files = append(files, indexFile{dir + "/Packages", text}, indexFile{dir + "/Packages.gz", gz}, indexFile{dir + "/Packages.xz", xzd})
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(suite, f.path), f.data); err != nil {
			return err
		}
		// by-hash: a server fetching while the next release is published still gets a
		// consistent set (Acquire-By-Hash).
		s256, s512 := sha256.Sum256(f.data), sha512.Sum512(f.data)
		dir := filepath.Join(suite, filepath.Dir(f.path), "by-hash")
		if err := writeFile(filepath.Join(dir, "SHA256", hex.EncodeToString(s256[:])), f.data); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "SHA512", hex.EncodeToString(s512[:])), f.data); err != nil {
			return err
		}
	}
	release := releaseFile(o, archs, files)
	if err := writeFile(filepath.Join(suite, "Release"), release); err != nil {
		return err
	}
	inRelease, detached, err := sign(o, release)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(suite, "InRelease"), inRelease); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(suite, "Release.gpg"), detached); err != nil {
		return err
	}
	var keyring bytes.Buffer
	if err := o.Signer.Serialize(&keyring); err != nil {
		return fmt.Errorf("public keyring: %w", err)
	}
	if err := writeFile(filepath.Join(root, KeyringFile), keyring.Bytes()); err != nil {
		return err
	}
	return writeFile(filepath.Join(root, SourcesFile), Sources(o))
}

// packagesIndex lists the packages of arch (and Architecture: all), sorted by name and
// Debian version order, each the .deb's own control fields plus where and what it is.
func packagesIndex(pkgs []pkg, arch string) ([]byte, error) {
	var sel []pkg
	for _, p := range pkgs {
		if p.arch == arch || p.arch == "all" {
			sel = append(sel, p)
		}
	}
	var cmpErr error
	slices.SortStableFunc(sel, func(a, b pkg) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		c, err := debversion.Compare(a.version, b.version)
		if err != nil && cmpErr == nil {
			cmpErr = err
		}
		if c == 0 {
			return strings.Compare(a.arch, b.arch)
		}
		return c
	})
	if cmpErr != nil {
		return nil, cmpErr
	}
	var b bytes.Buffer
	for i, p := range sel {
		if i > 0 {
			b.WriteByte('\n')
		}
		para := control.Paragraph{Values: map[string]string{}}
		for _, k := range p.para.Order {
			if k != "Description" {
				para.Set(k, p.para.Values[k])
			}
		}
		para.Set("Filename", p.pool)
		para.Set("Size", fmt.Sprint(p.size))
		para.Set("SHA256", p.sha256)
		para.Set("SHA512", p.sha512)
		if d, ok := p.para.Values["Description"]; ok {
			para.Set("Description", d)
		}
		if err := para.WriteTo(&b); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// releaseFile is dists/<suite>/Release.
func releaseFile(o Options, archs []string, files []indexFile) []byte {
	var b bytes.Buffer
	date := o.Date.UTC()
	fmt.Fprintf(&b, "Origin: %s\nLabel: %s\nSuite: %s\nCodename: %s\n", o.Origin, o.Label, o.Suite, o.Codename)
	fmt.Fprintf(&b, "Date: %s\nValid-Until: %s\n", date.Format(time.RFC1123Z), date.Add(o.ValidFor).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Architectures: %s\nComponents: %s\n", strings.Join(archs, " "), o.Component)
	fmt.Fprintf(&b, "Description: emrkit releases, signed; see emrkit's README for the fleet rollout\n")
	fmt.Fprintf(&b, "Acquire-By-Hash: yes\n")
	for _, h := range []struct {
		name string
		sum  func([]byte) string
	}{
		{"SHA256", func(d []byte) string { s := sha256.Sum256(d); return hex.EncodeToString(s[:]) }},
		{"SHA512", func(d []byte) string { s := sha512.Sum512(d); return hex.EncodeToString(s[:]) }},
	} {
		fmt.Fprintf(&b, "%s:\n", h.name)
		for _, f := range files {
			fmt.Fprintf(&b, " %s %d %s\n", h.sum(f.data), len(f.data), f.path)
		}
	}
	return b.Bytes()
}

// sign returns InRelease (clearsigned) and Release.gpg (armored, detached), both made at the
// Date (or, for a key made after it, at the key's creation) without a random salt, so the
// same inputs sign the same bytes.
func sign(o Options, release []byte) ([]byte, []byte, error) {
	deterministic := false
	at := o.Date
	if created := o.Signer.PrimaryKey.CreationTime; created.After(at) {
		at = created
	}
	cfg := &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return at }, NonDeterministicSignaturesViaNotation: &deterministic}
	var in bytes.Buffer
	w, err := clearsign.Encode(&in, o.Signer.PrivateKey, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("sign InRelease: %w", err)
	}
	if _, err := w.Write(release); err != nil {
		return nil, nil, err
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("sign InRelease: %w", err)
	}
	in.WriteByte('\n')
	var det bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&det, o.Signer, bytes.NewReader(release), cfg); err != nil {
		return nil, nil, fmt.Errorf("sign Release.gpg: %w", err)
	}
	det.WriteByte('\n')
	return in.Bytes(), det.Bytes(), nil
}

// Sources is the deb822 source a server installs, trusting only emrkit's keyring.
func Sources(o Options) []byte {
	uri := o.URI
	if uri == "" {
		uri = "https://REPLACE-WITH-YOUR-REPOSITORY/"
	}
	return []byte(fmt.Sprintf("Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: %s\n", uri, o.Suite, o.Component, KeyringPath))
}

func xzed(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := xz.NewWriter(&b)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(zw, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// LoadSigner reads an armored private key and unlocks it with the first line of
// passphraseFile ("" for a key without a passphrase).
func LoadSigner(keyFile, passphraseFile string) (*openpgp.Entity, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	var pass []byte
	if passphraseFile != "" {
		if pass, err = pgp.ReadPassphraseFile(passphraseFile); err != nil {
			return nil, err
		}
	}
	keys, err := pgp.ReadPrivateKey(data, pass)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", keyFile, err)
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("signing key %s holds %d keys; give one", keyFile, len(keys))
	}
	return keys[0], CheckSigner(keys[0])
}

// NewKey makes a signing key gpgv 2.2 and later apt accept (v4, legacy EdDSA on Curve25519),
// locked with a new random passphrase.
func NewKey(uid string) (pgp.KeySet, error) { return pgp.GenerateKey(uid, pgp.Curve25519) }
