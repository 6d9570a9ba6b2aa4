package pgp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/props"
)

// Call is OSCAR's encryption call as oscar.properties configures it.
type Call struct {
	Bin, Cmd, Key, Env string
	EncryptedOnly      string // demographic.export.encryptedOnly as set
}

// ReadCall reads the PGP_* properties; a missing one is an error naming the fix.
func ReadCall(path string) (Call, error) {
	if path == "" {
		return Call{}, errors.New("OSCAR is not installed (no oscar.properties found); set oscar.properties in the emrkit config")
	}
	f, err := props.Load(path)
	if err != nil {
		return Call{}, err
	}
	var c Call
	for _, p := range []struct {
		key string
		v   *string
	}{{PropBin, &c.Bin}, {PropCmd, &c.Cmd}, {PropKey, &c.Key}, {PropEnv, &c.Env}} {
		v, ok := f.Doc.Get(p.key)
		if !ok || strings.TrimSpace(v) == "" {
			return c, fmt.Errorf("%s is not set in %s; run `emrkit pgp setup`", p.key, path)
		}
		*p.v = v
	}
	c.EncryptedOnly, _ = f.Doc.Get(PropEncryptedOnly)
	return c, nil
}

// SelftestResult is what the self-test did.
type SelftestResult struct {
	Call     Call
	Account  string
	Elapsed  time.Duration
	Verified string // how the encrypted export was checked
}

// SelftestFailure is a self-test that ran and found OSCAR's exports would not work.
type SelftestFailure struct{ Reason string }

func (f *SelftestFailure) Error() string { return "self-test failed: " + f.Reason }

func failf(format string, args ...any) error {
	return &SelftestFailure{Reason: fmt.Sprintf(format, args...)}
}

// Selftest replays OSCAR's exact call — argv [PGP_BIN, PGP_CMD, file, PGP_KEY], PGP_ENV as
// the whole environment, a fresh export directory as cwd, as the Tomcat user, without a
// terminal — first as OSCAR's readiness check (an empty null.tmp), then on an export-sized
// file, and checks the result: decrypting it with the key or passphrase emrkit keeps, or,
// when the private key is not on the server, that it is encrypted to the export key and
// only to it. A *SelftestFailure says why exports would fail; other errors are setup
// problems (no oscar.properties, no Tomcat user).
func Selftest(ctx context.Context, cfg config.Config, env Env, tempDir string) (SelftestResult, error) {
	env = env.withDefaults()
	start := time.Now()
	var res SelftestResult
	if cfg.PGP.Mode == "none" {
		return res, errors.New("pgp.mode is none: OSCAR's exports are not encrypted by emrkit")
	}
	call, err := ReadCall(env.Properties)
	if err != nil {
		return res, err
	}
	res.Call = call
	acct, err := Tomcat(cfg, env)
	if err != nil {
		return res, err
	}
	res.Account = acct.Name
	dir, err := exportDir(tempDir, acct)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)

	if _, err := oscarCall(ctx, call, acct, dir, "null.tmp", nil); err != nil {
		return res, err
	}
	name := "export_selftest_" + time.Now().Format("20060102150405") + ".zip"
	plain := make([]byte, 256<<10)
	if _, err := rand.Read(plain); err != nil {
		return res, err
	}
	sealed, err := oscarCall(ctx, call, acct, dir, name, plain)
	if err != nil {
		return res, err
	}
	if res.Verified, err = verify(cfg, env, call, sealed, plain); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// exportDir makes a directory only the Tomcat user can use, as OSCAR's export dir is.
func exportDir(parent string, a Account) (string, error) {
	dir, err := os.MkdirTemp(parent, "emrkit-selftest-*")
	if err != nil {
		return "", fmt.Errorf("self-test directory: %w", err)
	}
	if err := os.Chown(dir, a.UID, a.GID); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("self-test directory: %w", err)
	}
	return dir, nil
}

// oscarCall writes name (owned by the Tomcat user, as OSCAR's own files are), runs OSCAR's
// call on it, and returns name.pgp.
func oscarCall(ctx context.Context, c Call, a Account, dir, name string, content []byte) ([]byte, error) {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		return nil, err
	}
	if err := os.Chown(path, a.UID, a.GID); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, c.Cmd, name, c.Key)
	cmd.Env = []string{c.Env}
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// OSCAR runs under systemd: no controlling terminal for gpg to ask questions on.
	cmd.SysProcAttr = a.credential()
	cmd.SysProcAttr.Setsid = true
	argv := fmt.Sprintf("%s %s %s %s (env %s, as %s, in %s)", c.Bin, c.Cmd, name, c.Key, c.Env, a.Name, dir)
	if err := cmd.Run(); err != nil {
		return nil, failf("%s: %v: %s", argv, err, lastLines(out.String(), 4))
	}
	sealed, err := os.ReadFile(path + ".pgp")
	if err != nil {
		return nil, failf("%s exited 0 but wrote no %s.pgp: %s", argv, name, lastLines(out.String(), 4))
	}
	return sealed, nil
}

// verify checks the encrypted export: decrypted with what emrkit keeps on the server, or
// addressed to the export key alone.
func verify(cfg config.Config, env Env, c Call, sealed, plain []byte) (string, error) {
	files := Paths(cfg)
	var got bytes.Buffer
	switch cfg.PGP.Mode {
	case "symmetric":
		pass, err := ReadPassphraseFile(c.Key)
		if err != nil {
			return "", failf("PGP_KEY %s: %v", c.Key, err)
		}
		if _, err := Decrypt(&got, bytes.NewReader(sealed), nil, func() ([]byte, error) { return pass, nil }); err != nil {
			return "", failf("the export does not decrypt with %s: %v", c.Key, err)
		}
		return checkPlain(got.Bytes(), plain, "decrypted with the passphrase in "+c.Key)
	case "generate", "public-key":
		src := cfg.PGP.PublicKey
		if cfg.PGP.Mode == "generate" {
			src = files.PublicKey
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return "", fmt.Errorf("export key: %w", err)
		}
		pk, err := ParsePublicKey(data, time.Now())
		if err != nil {
			return "", fmt.Errorf("export key %s: %w", src, err)
		}
		if !strings.EqualFold(c.Key, pk.Fingerprint) {
			return "", failf("PGP_KEY is %q, not the export key's fingerprint %s; run `emrkit pgp setup`", c.Key, pk.Fingerprint)
		}
		if err := addressedTo(sealed, pk); err != nil {
			return "", err
		}
		if cfg.PGP.Mode == "generate" {
			if keys, err := serverKey(files); err == nil {
				if _, err := Decrypt(&got, bytes.NewReader(sealed), keys, nil); err != nil {
					return "", failf("the export does not decrypt with %s: %v", files.PrivateKey, err)
				}
				return checkPlain(got.Bytes(), plain, "decrypted with the private key in "+files.PrivateKey)
			} else if !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
		}
		return fmt.Sprintf("encrypted to %s only (its private key is not on this server)", pk.Fingerprint), nil
	}
	return "", fmt.Errorf("pgp.mode %q has no self-test", cfg.PGP.Mode)
}

func checkPlain(got, want []byte, how string) (string, error) {
	if !bytes.Equal(got, want) {
		return "", failf("the export decrypts to %d bytes that differ from the %d written", len(got), len(want))
	}
	return how, nil
}

// serverKey reads the generated private key and its passphrase, when they are still here.
func serverKey(f Files) (openpgp.EntityList, error) {
	data, err := os.ReadFile(f.PrivateKey)
	if err != nil {
		return nil, err
	}
	pass, err := ReadPassphraseFile(f.Passphrase)
	if err != nil {
		return nil, err
	}
	return ReadPrivateKey(data, pass)
}

// addressedTo checks that the message is encrypted, with integrity protection, to the
// export key's encryption subkey and to no other key (an encrypt-to in gpg.conf would
// otherwise hand every export to someone else too).
func addressedTo(sealed []byte, pk PublicKey) error {
	r := packet.NewReader(bytes.NewReader(sealed))
	var ids []uint64
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return failf("the export holds no encrypted data")
		}
		if err != nil {
			return failf("the export is not an OpenPGP message: %v", err)
		}
		switch p := p.(type) {
		case *packet.EncryptedKey:
			if !pk.EncryptionKeyIDs[p.KeyId] {
				return failf("the export is also encrypted to key id %016X, which is not the export key %s (encrypt-to in gpg.conf?)", p.KeyId, pk.Fingerprint)
			}
			ids = append(ids, p.KeyId)
		case *packet.SymmetricKeyEncrypted:
			return failf("the export is encrypted with a passphrase, not to the export key")
		case *packet.SymmetricallyEncrypted:
			if !p.IntegrityProtected {
				return failf("the export has no integrity protection (MDC)")
			}
			if len(ids) == 0 {
				return failf("the export is not encrypted to the export key %s", pk.Fingerprint)
			}
			return nil
		case *packet.AEADEncrypted:
			if len(ids) == 0 {
				return failf("the export is not encrypted to the export key %s", pk.Fingerprint)
			}
			return nil
		default:
			return failf("the export is not encrypted (found a %T packet first)", p)
		}
	}
}
