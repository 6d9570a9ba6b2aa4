package pgp_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
)

// The numbers of the PGP export report; pkg/pgp/testdata/bench.sh runs them all.

// BenchmarkGenerateKey: key generation per algorithm (the time `pgp setup` spends on it).
func BenchmarkGenerateKey(b *testing.B) {
	for _, algo := range []pgp.Algorithm{pgp.RSA3072, pgp.Curve25519} {
		b.Run(string(algo), func(b *testing.B) {
			for range b.N {
				if _, err := pgp.GenerateKey("OSCAR Export <root@localhost>", algo); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSelftest: `pgp selftest` per mode, on a host set up by emrkit.
func BenchmarkSelftest(b *testing.B) {
	for _, mode := range []string{"generate", "symmetric"} {
		b.Run(mode, func(b *testing.B) {
			l := newLab(b, mode)
			l.env.Algorithm = pgp.Curve25519
			l.mustRun()
			b.ResetTimer()
			for range b.N {
				if _, err := pgp.Selftest(context.Background(), l.cfg, l.env, l.base); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			l.reverted()
		})
	}
}

// BenchmarkDecrypt100MB: a 100 MB export encrypted the OSCAR way (pgpgpg to an RSA-3072 key,
// or emrkit oscar-encrypt with a passphrase), decrypted by emrkit and by `gpg -d` in the same
// run; MB/s is the plaintext rate. "file" writes the plaintext (emrkit also fsyncs it before
// renaming it into place, gpg does not), "discard" measures decryption alone.
func BenchmarkDecrypt100MB(b *testing.B) {
	const size = 100 << 20
	for _, mode := range []string{"generate", "symmetric"} {
		l := newLab(b, mode)
		l.mustRun()
		_, sealed := l.oscarEncrypt(size)
		files := pgp.Paths(l.cfg)
		gh := pgptest.RootHome(b, l.base, "admin-gnupg")
		pass := files.Symmetric
		if mode == "generate" {
			pgptest.GPG(b, gh, nil, "--import", files.PrivateKey)
			pass = files.Passphrase
		}
		keys, passphrase := emrkitKeys(b, mode, files)
		out := filepath.Join(l.base, "plain.zip")
		for _, sink := range []string{"file", "discard"} {
			b.Run(mode+"/emrkit-"+sink, func(b *testing.B) {
				b.SetBytes(size)
				for range b.N {
					os.Remove(out)
					var err error
					if sink == "file" {
						_, err = pgp.DecryptFile(sealed, out, keys, passphrase)
					} else {
						f, _ := os.Open(sealed)
						_, err = pgp.Decrypt(io.Discard, f, keys, passphrase)
						f.Close()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(mode+"/gpg-"+sink, func(b *testing.B) {
				b.SetBytes(size)
				for range b.N {
					os.Remove(out)
					args := []string{"--homedir", gh, "--batch", "--no-tty", "--quiet", "--pinentry-mode", "loopback", "--passphrase-file", pass}
					if sink == "file" {
						args = append(args, "--output", out)
					}
					cmd := exec.Command("/usr/bin/gpg", append(args, "--decrypt", sealed)...)
					var stderr bytes.Buffer
					cmd.Stderr = &stderr // stdout: /dev/null
					if err := cmd.Run(); err != nil {
						b.Fatalf("gpg -d: %v: %s", err, stderr.String())
					}
				}
			})
		}
		l.reverted()
	}
}

// emrkitKeys reads what `emrkit pgp decrypt` uses by default in mode.
func emrkitKeys(b *testing.B, mode string, f pgp.Files) (openpgp.EntityList, func() ([]byte, error)) {
	b.Helper()
	if mode == "symmetric" {
		pass, err := pgp.ReadPassphraseFile(f.Symmetric)
		if err != nil {
			b.Fatal(err)
		}
		return nil, func() ([]byte, error) { return pass, nil }
	}
	sec, err := os.ReadFile(f.PrivateKey)
	if err != nil {
		b.Fatal(err)
	}
	pass, err := pgp.ReadPassphraseFile(f.Passphrase)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := pgp.ReadPrivateKey(sec, pass)
	if err != nil {
		b.Fatal(err)
	}
	return keys, nil
}
