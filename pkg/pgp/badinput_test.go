package pgp_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/pgp"
)

// refused runs the setup and wants an error naming the problem, with the host untouched.
func refused(t *testing.T, l *lab, want string) {
	t.Helper()
	_, out, err := l.run()
	if err == nil {
		t.Fatalf("setup succeeded, want an error with %q\n%s", want, out)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	l.unchanged()
}

// TestKeyWithoutEncryptionSubkey: a signing-only key from gpg is refused with the fix.
func TestKeyWithoutEncryptionSubkey(t *testing.T) {
	l := newLab(t, "public-key")
	_, pubFile, _ := adminKey(t, l.base, "sign")
	l.cfg.PGP.PublicKey = pubFile
	refused(t, l, "has no usable encryption subkey")
}

func TestBadInput(t *testing.T) {
	t.Run("unparsable public key", func(t *testing.T) {
		l := newLab(t, "public-key")
		l.cfg.PGP.PublicKey = filepath.Join(l.base, "key.asc")
		os.WriteFile(l.cfg.PGP.PublicKey, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64!\n-----END PGP PUBLIC KEY BLOCK-----\n"), 0o644)
		refused(t, l, "not an OpenPGP public key")
	})
	t.Run("missing public key", func(t *testing.T) {
		l := newLab(t, "public-key")
		l.cfg.PGP.PublicKey = filepath.Join(l.base, "nope.asc")
		refused(t, l, "no such file")
	})
	t.Run("private key given as public key", func(t *testing.T) {
		l := newLab(t, "public-key")
		ks, err := pgp.GenerateKey("X <x@example.org>", pgp.Curve25519)
		if err != nil {
			t.Fatal(err)
		}
		l.cfg.PGP.PublicKey = filepath.Join(l.base, "key.asc")
		os.WriteFile(l.cfg.PGP.PublicKey, ks.Private, 0o600)
		refused(t, l, "is a private key")
	})
	t.Run("missing Tomcat user", func(t *testing.T) {
		l := newLab(t, "generate")
		l.env.TomcatUser, l.cfg.OSCAR.TomcatUser = "", "emrkit-no-such-user"
		refused(t, l, `oscar.tomcat_user: user "emrkit-no-such-user" does not exist`)
	})
	t.Run("Tomcat not installed defers", func(t *testing.T) {
		l := newLab(t, "symmetric")
		l.env.TomcatUser, l.env.TomcatCandidates = "", []string{"emrkit-no-such-tomcat"}
		rep, out, err := l.run()
		if err != nil || rep.Deferred != 1 || rep.Applied != 0 {
			t.Fatalf("want one deferral, got %+v, %v\n%s", rep, err, out)
		}
		mustContain(t, out, "OSCAR/Tomcat is not installed yet")
		l.unchanged()
	})
	t.Run("gpg missing", func(t *testing.T) {
		l := newLab(t, "generate")
		l.env.GPG = filepath.Join(l.base, "no", "gpg")
		refused(t, l, "gpg is not installed")
	})
	t.Run("pgpgpg missing", func(t *testing.T) {
		l := newLab(t, "generate")
		l.env.PGPGPG = filepath.Join(l.base, "no", "pgpgpg")
		refused(t, l, "apt-get install pgpgpg")
	})
	t.Run("bad user id", func(t *testing.T) {
		l := newLab(t, "generate")
		l.cfg.PGP.UID = "<root@localhost> (x)"
		refused(t, l, "pgp.uid")
	})
	t.Run("GnuPG home of another owner", func(t *testing.T) {
		l := newLab(t, "generate")
		os.Mkdir(l.home, 0o700) // root's, not the Tomcat user's
		_, _, err := l.run()
		if err == nil || !strings.Contains(err.Error(), "belongs to uid 0") {
			t.Errorf("error %v does not say who owns the home", err)
		}
		if err := os.Remove(l.home); err != nil {
			t.Errorf("the home was used: %v", err)
		}
		l.unchanged()
	})
	t.Run("foreign file where emrkit writes", func(t *testing.T) {
		l := newLab(t, "symmetric")
		os.MkdirAll(filepath.Dir(l.cfg.Paths.PGPPassphraseFile), 0o755)
		os.WriteFile(l.cfg.Paths.PGPPassphraseFile, []byte("the admin's own\n"), 0o600)
		refused(t, l, "is not what emrkit wrote there")
		if b, _ := os.ReadFile(l.cfg.Paths.PGPPassphraseFile); string(b) != "the admin's own\n" {
			t.Error("the admin's file was overwritten")
		}
	})
}

// TestWrongPassphrase: a wrong passphrase, for a locked key or a symmetric export, and a
// damaged export are clear errors that leave no output.
func TestWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	plain := bytes.Repeat([]byte("patient data "), 10000)
	in := filepath.Join(dir, "export.zip")
	os.WriteFile(in, plain, 0o600)
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("right-passphrase\n"), 0o600)
	if err := pgp.OSCAREncrypt(in, pass); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.zip")
	_, err := pgp.DecryptFile(in+".pgp", out, nil, func() ([]byte, error) { return []byte("wrong"), nil })
	if err == nil {
		t.Fatal("decrypted with a wrong passphrase")
	}
	if !errors.Is(err, pgp.ErrWrongPassphrase) && !strings.Contains(err.Error(), "passphrase is wrong") {
		t.Errorf("error %q does not say the passphrase is wrong", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written despite the wrong passphrase")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".out.zip*")); len(m) > 0 {
		t.Errorf("temporary output left behind: %v", m)
	}

	sealed, _ := os.ReadFile(in + ".pgp")
	sealed[len(sealed)-10] ^= 0xff
	os.WriteFile(in+".pgp", sealed, 0o600)
	if _, err := pgp.DecryptFile(in+".pgp", out, nil, func() ([]byte, error) { return []byte("right-passphrase"), nil }); err == nil {
		t.Error("a damaged export decrypted without error")
	} else if _, serr := os.Stat(out); serr == nil {
		t.Errorf("damaged export (%v) left output", err)
	}

	ks, err := pgp.GenerateKey("OSCAR Export <root@localhost>", pgp.Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgp.ReadPrivateKey(ks.Private, []byte("wrong")); !errors.Is(err, pgp.ErrWrongPassphrase) {
		t.Errorf("locked key with a wrong passphrase: %v", err)
	}
	if _, err := pgp.ReadPrivateKey(ks.Private, bytes.TrimSpace(ks.Passphrase)); err != nil {
		t.Errorf("locked key with its passphrase: %v", err)
	}
}

// TestHomeWithForeignFilesIsKept: undo never removes a GnuPG home that holds what emrkit
// did not put there, even one emrkit created.
func TestHomeWithForeignFilesIsKept(t *testing.T) {
	l := newLab(t, "generate")
	l.env.Algorithm = pgp.Curve25519
	l.mustRun()
	os.WriteFile(filepath.Join(l.home, "gpg.conf"), []byte("# the admin's\n"), 0o600)
	rep, out, err := l.revert()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kept != 1 {
		t.Errorf("kept %d, want 1 (the home)\n%s", rep.Kept, out)
	}
	mustContain(t, out, "gpg.conf")
	if _, err := os.Stat(filepath.Join(l.home, "gpg.conf")); err != nil {
		t.Error("the admin's gpg.conf is gone")
	}
	if got, _ := os.ReadFile(l.props); !bytes.Equal(got, l.orig) {
		t.Error("properties not restored")
	}
}

// TestSelftestFailsWithoutTrust: the self-test catches what would make OSCAR's export
// fail — here gpg refusing an untrusted key without a terminal — and says why.
func TestSelftestFailsWithoutTrust(t *testing.T) {
	l := newLab(t, "public-key")
	_, pubFile, fpr := adminKey(t, l.base, "")
	l.cfg.PGP.PublicKey = pubFile
	l.mustRun()
	g := pgp.GPG{Path: "/usr/bin/gpg", Conf: "/usr/bin/gpgconf", Home: l.home, Account: &l.user}
	if err := g.SetOwnertrust(context.Background(), fpr, 0); err != nil {
		t.Fatal(err)
	}
	_, err := pgp.Selftest(context.Background(), l.cfg, l.env, l.base)
	var f *pgp.SelftestFailure
	if !errors.As(err, &f) {
		t.Fatalf("selftest with an untrusted key: %v, want a SelftestFailure", err)
	}
	mustContain(t, f.Reason, "pgpgpg -e null.tmp "+fpr)
	if err := g.SetOwnertrust(context.Background(), fpr, 6); err != nil {
		t.Fatal(err)
	}
	if _, err := pgp.Selftest(context.Background(), l.cfg, l.env, l.base); err != nil {
		t.Fatalf("selftest with trust back: %v", err)
	}
	l.reverted()
}

// TestNoneAndNoProperties: mode none plans nothing; no oscar.properties defers the
// properties but still sets up the key.
func TestNoneAndNoProperties(t *testing.T) {
	steps, err := pgp.Steps(defaultCfg("none"), pgp.Env{}, pgp.Since)
	if err != nil || steps != nil {
		t.Fatalf("mode none: %v, %v", steps, err)
	}
	l := newLab(t, "symmetric")
	l.env.Properties = ""
	rep, out, err := l.run()
	if err != nil || rep.Applied != 1 || rep.Deferred != 5 {
		t.Fatalf("want the passphrase applied and 5 properties deferred: %+v %v\n%s", rep, err, out)
	}
	l.reverted()
}
