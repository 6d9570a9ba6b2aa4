package pgp_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
)

func mode(t *testing.T, path string) (os.FileMode, int, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), int(st.Uid), int(st.Gid)
}

func wantMode(t *testing.T, path string, perm os.FileMode, uid, gid int) {
	t.Helper()
	p, u, g := mode(t, path)
	if p != perm || u != uid || g != gid {
		t.Errorf("%s is %v %d:%d, want %v %d:%d", path, p, u, g, perm, uid, gid)
	}
}

// TestGenerateMode: emrkit generates the key (RSA-3072 and Curve25519), OSCAR's call
// through pgpgpg encrypts to it, gpg -d and emrkit decrypt it, no passphrase leaks, undo
// leaves no keyring and the properties byte for byte.
func TestGenerateMode(t *testing.T) {
	for _, algo := range []pgp.Algorithm{pgp.RSA3072, pgp.Curve25519} {
		t.Run(string(algo), func(t *testing.T) {
			l := newLab(t, "generate")
			l.env.Algorithm = algo
			watch := pgptest.WatchProcs(l.user.UID)
			start := time.Now()
			rep := l.mustRun()
			t.Logf("setup (%s) took %v", algo, time.Since(start))
			if rep.Applied != 8 {
				t.Errorf("applied %d steps, want 8 (home, key set, keyring, 5 properties)", rep.Applied)
			}
			files := pgp.Paths(l.cfg)
			wantMode(t, l.home, 0o700, l.user.UID, l.user.GID)
			wantMode(t, files.Dir, 0o700, 0, 0)
			wantMode(t, files.Passphrase, 0o600, 0, 0)
			wantMode(t, files.PrivateKey, 0o600, 0, 0)
			pub, _ := os.ReadFile(files.PublicKey)
			pk, err := pgp.ParsePublicKey(pub, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]string{pgp.PropBin: "/usr/bin/pgpgpg", pgp.PropCmd: "-e",
				pgp.PropKey: pk.Fingerprint, pgp.PropEnv: "GNUPGHOME=" + l.home, pgp.PropEncryptedOnly: "true"} {
				if got := l.prop(key); got != want {
					t.Errorf("%s=%q, want %q", key, got, want)
				}
			}
			if rep := l.mustRun(); rep.Applied+rep.Finished != 0 || rep.Unchanged != 8 {
				t.Errorf("second run changed something: %+v", rep)
			}

			start = time.Now()
			res, err := pgp.Selftest(context.Background(), l.cfg, l.env, l.base)
			if err != nil {
				t.Fatalf("selftest: %v", err)
			}
			t.Logf("selftest took %v: %s", time.Since(start), res.Verified)
			mustContain(t, res.Verified, "decrypted with the private key")

			plain, sealed := l.oscarEncrypt(1 << 20)
			gh := pgptest.RootHome(t, l.base, "admin-gnupg")
			pgptest.GPG(t, gh, nil, "--import", files.PrivateKey)
			if got := gpgDecrypt(t, gh, sealed, files.Passphrase); !bytes.Equal(got, plain) {
				t.Errorf("gpg -d gives %d bytes, want the %d encrypted", len(got), len(plain))
			}
			pass, _ := os.ReadFile(files.Passphrase)
			sec, _ := os.ReadFile(files.PrivateKey)
			keys, err := pgp.ReadPrivateKey(sec, bytes.TrimSpace(pass))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(l.base, "decrypted.zip")
			if _, err := pgp.DecryptFile(sealed, out, keys, nil); err != nil {
				t.Fatalf("emrkit decrypt: %v", err)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, plain) {
				t.Error("emrkit decrypt gives other bytes")
			}
			wantMode(t, out, 0o600, 0, 0)

			secrets := [][]byte{pass}
			watch.Check(t, secrets, "pgpgpg -e", "gpg --homedir "+l.home)
			pgptest.NoSecretReadable(t, secrets, -1, l.base)
			if bytes.Contains(mustRead(t, l.props), bytes.TrimSpace(pass)) {
				t.Error("oscar.properties holds the passphrase")
			}
			for _, e := range l.entries() {
				if bytes.Contains(e.Desired, bytes.TrimSpace(pass)) || bytes.Contains(e.Desired, []byte("PRIVATE KEY")) {
					t.Errorf("journal entry %s holds a secret", e.ID)
				}
			}

			l.reverted()
			if _, err := os.Stat(l.home); err == nil {
				t.Errorf("GnuPG home %s, created by emrkit, is still there", l.home)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// adminKey makes a key the way an admin does (gpg --quick-gen-key) in a root home and
// returns the home and the armored public key's path.
func adminKey(t *testing.T, base, usage string) (home, pubFile, fpr string) {
	t.Helper()
	home = pgptest.RootHome(t, base, "admin-gnupg")
	args := []string{"--passphrase", "", "--quick-gen-key", "Clinic Admin <admin@clinic.example>"}
	if usage == "" {
		args = append(args, "default", "default", "never")
	} else {
		args = append(args, "ed25519", usage, "never")
	}
	pgptest.GPG(t, home, nil, args...)
	pub := pgptest.GPG(t, home, nil, "--armor", "--export", "admin@clinic.example")
	pubFile = filepath.Join(base, "admin.pub.asc")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	pk, err := pgp.ParsePublicKey(pub, time.Now())
	if usage == "" && err != nil {
		t.Fatal(err)
	}
	return home, pubFile, pk.Fingerprint
}

// TestPublicKeyMode: a key from `gpg --quick-gen-key` is imported into a GnuPG home that
// was already there (with a key of the admin's); OSCAR's call encrypts to it alone; gpg -d
// and emrkit decrypt with the admin's private key; undo takes out only emrkit's key.
func TestPublicKeyMode(t *testing.T) {
	l := newLab(t, "public-key")
	adminHome, pubFile, fpr := adminKey(t, l.base, "")
	l.cfg.PGP.PublicKey = pubFile

	// The home exists already, with another key in it.
	if err := os.Mkdir(l.home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(l.home, l.user.UID, l.user.GID)
	other, _ := pgp.GenerateKey("Someone Else <else@example.org>", pgp.Curve25519)
	g := pgp.GPG{Path: "/usr/bin/gpg", Conf: "/usr/bin/gpgconf", Home: l.home, Account: &l.user}
	if err := g.Import(context.Background(), other.Public); err != nil {
		t.Fatal(err)
	}

	rep := l.mustRun()
	if rep.Applied != 6 {
		t.Errorf("applied %d, want 6 (keyring, 5 properties; the home was there)", rep.Applied)
	}
	if l.prop(pgp.PropKey) != fpr {
		t.Errorf("PGP_KEY=%q, want %s", l.prop(pgp.PropKey), fpr)
	}
	// Before anything else runs gpg there: Debian's Tomcat unit (ProtectSystem=strict)
	// leaves Tomcat's GnuPG home read-only, and OSCAR's call must still work.
	parent := filepath.Join(l.base, "sandboxed")
	os.Mkdir(parent, 0o755)
	dir, name, _ := pgptest.ExportDir(t, parent, l.user, 1000)
	if out, err := pgptest.OSCARCallSandboxed(l.user, dir, l.home, l.prop(pgp.PropEnv), l.prop(pgp.PropBin), l.prop(pgp.PropCmd), name, l.prop(pgp.PropKey)); err != nil {
		t.Errorf("OSCAR's call with a read-only GnuPG home: %v: %s", err, out)
	} else if _, err := os.Stat(filepath.Join(dir, name+".pgp")); err != nil {
		t.Errorf("OSCAR's call with a read-only GnuPG home wrote no .pgp: %s", out)
	}

	res, err := pgp.Selftest(context.Background(), l.cfg, l.env, l.base)
	if err != nil {
		t.Fatalf("selftest: %v", err)
	}
	mustContain(t, res.Verified, "encrypted to "+fpr+" only")

	plain, sealed := l.oscarEncrypt(300 << 10)
	if got := gpgDecrypt(t, adminHome, sealed, ""); !bytes.Equal(got, plain) {
		t.Error("gpg -d with the admin's key gives other bytes")
	}
	sec := pgptest.GPG(t, adminHome, nil, "--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys", fpr)
	keys, err := pgp.ReadPrivateKey(sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	f, _ := os.Open(sealed)
	defer f.Close()
	if _, err := pgp.Decrypt(&got, f, keys, nil); err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Errorf("emrkit decrypt: %v", err)
	}

	l.reverted()
	keysLeft, err := g.Fingerprints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if keysLeft[fpr] || !keysLeft[other.Fingerprint] || len(keysLeft) != 1 {
		t.Errorf("after undo the keyring holds %v; want only the admin's other key %s", keysLeft, other.Fingerprint)
	}
}

// TestSymmetricMode: the passphrase file is 0640 root:<Tomcat group>, OSCAR's call runs
// `emrkit oscar-encrypt` with one harmless environment variable, gpg -d and emrkit decrypt
// the result, and undo removes the passphrase file.
func TestSymmetricMode(t *testing.T) {
	l := newLab(t, "symmetric")
	watch := pgptest.WatchProcs(l.user.UID)
	rep := l.mustRun()
	if rep.Applied != 6 {
		t.Errorf("applied %d, want 6 (passphrase, 5 properties)", rep.Applied)
	}
	files := pgp.Paths(l.cfg)
	wantMode(t, files.Symmetric, 0o640, 0, l.user.GID)
	for key, want := range map[string]string{pgp.PropBin: l.env.Emrkit, pgp.PropCmd: "oscar-encrypt",
		pgp.PropKey: files.Symmetric, pgp.PropEnv: "EMRKIT_PGP=symmetric", pgp.PropEncryptedOnly: "true"} {
		if got := l.prop(key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	res, err := pgp.Selftest(context.Background(), l.cfg, l.env, l.base)
	if err != nil {
		t.Fatalf("selftest: %v", err)
	}
	mustContain(t, res.Verified, "decrypted with the passphrase")

	plain, sealed := l.oscarEncrypt(1 << 20)
	wantMode(t, sealed, 0o600, l.user.UID, l.user.GID)
	gh := pgptest.RootHome(t, l.base, "admin-gnupg")
	if got := gpgDecrypt(t, gh, sealed, files.Symmetric); !bytes.Equal(got, plain) {
		t.Error("gpg -d gives other bytes")
	}
	pass, _ := pgp.ReadPassphraseFile(files.Symmetric)
	var got bytes.Buffer
	f, _ := os.Open(sealed)
	defer f.Close()
	if _, err := pgp.Decrypt(&got, f, nil, func() ([]byte, error) { return pass, nil }); err != nil || !bytes.Equal(got.Bytes(), plain) {
		t.Errorf("emrkit decrypt: %v", err)
	}
	watch.Check(t, [][]byte{pass}, "oscar-encrypt", "gpg --homedir "+gh)
	pgptest.NoSecretReadable(t, [][]byte{pass}, l.user.GID, l.base)
	if bytes.Contains(mustRead(t, l.props), pass) {
		t.Error("oscar.properties holds the passphrase")
	}
	for _, e := range l.entries() {
		if bytes.Contains(e.Desired, pass) || bytes.Contains(e.Before, pass) {
			t.Errorf("journal entry %s holds the passphrase", e.ID)
		}
	}

	l.reverted()
	if _, err := os.Stat(files.Symmetric); err == nil {
		t.Error("the passphrase file is still there")
	}
}
