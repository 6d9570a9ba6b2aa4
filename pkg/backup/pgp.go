package backup

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emrkit/emrkit/pkg/fsutil"
)

// pgpConfig is what encrypted backups are written with: AES-256 in a SEIPD v1 (MDC) packet,
// no AEAD and no OpenPGP compression (the payload is gzip already) — a message GnuPG 2.2
// (Debian 12) decrypts with `gpg -d`, as `emrkit pgp decrypt` and `emrkit restore` do.
func pgpConfig() *packet.Config {
	return &packet.Config{
		DefaultCipher:          packet.CipherAES256,
		DefaultHash:            crypto.SHA256,
		DefaultCompressionAlgo: packet.CompressionNone,
	}
}

// encrypt starts an OpenPGP message to recipients on w; the returned writer takes the
// plaintext and must be closed to finish the message.
func encrypt(w io.Writer, recipients openpgp.EntityList, fileName string) (io.WriteCloser, error) {
	hints := &openpgp.FileHints{IsBinary: true, FileName: fileName}
	pw, err := openpgp.Encrypt(w, recipients, nil, hints, pgpConfig())
	if err != nil {
		return nil, fmt.Errorf("encrypt to the export key: %w", err)
	}
	return pw, nil
}

// readKeyFile reads armored or binary OpenPGP keys from path.
func readKeyFile(path string) (openpgp.EntityList, error) {
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(data))
}

// ReadPublicKey reads the export public key (armored or binary) that encrypted backups go to,
// and checks that GnuPG 2.2 can decrypt what is encrypted to it: a v4 key with a usable
// encryption subkey.
func ReadPublicKey(path string) (openpgp.EntityList, error) {
	keys, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("export key %s: %v; give the armored public key (gpg --armor --export FINGERPRINT)", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("export key %s holds no key", path)
	}
	now := time.Now()
	for _, e := range keys {
		if e.PrimaryKey.Version != 4 {
			return nil, fmt.Errorf("export key %s: a version %d key; GnuPG 2.2 needs a version 4 key", path, e.PrimaryKey.Version)
		}
		if _, ok := e.EncryptionKey(now); !ok {
			return nil, fmt.Errorf("export key %s: key %X has no usable encryption subkey (expired, revoked, or sign-only)", path, e.PrimaryKey.Fingerprint)
		}
	}
	return keys, nil
}

// ReadPrivateKey reads the private key an encrypted backup was encrypted to, unlocking it with
// the first line of passphraseFile ("" for a key without a passphrase).
func ReadPrivateKey(keyFile, passphraseFile string) (openpgp.EntityList, error) {
	keys, err := readKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", keyFile, err)
	}
	var pass []byte
	if passphraseFile != "" {
		data, err := fsutil.ReadFile(passphraseFile, fsutil.TextLimit)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		pass = bytes.TrimSuffix(line, []byte("\r"))
	}
	var out openpgp.EntityList
	for _, e := range keys {
		if e.PrivateKey == nil {
			continue
		}
		locked := e.PrivateKey.Encrypted
		for _, s := range e.Subkeys {
			locked = locked || (s.PrivateKey != nil && s.PrivateKey.Encrypted)
		}
		if locked {
			if pass == nil {
				return nil, fmt.Errorf("private key %s is protected by a passphrase; give --passphrase-file", keyFile)
			}
			if err := e.DecryptPrivateKeys(pass); err != nil {
				return nil, fmt.Errorf("private key %s: wrong passphrase", keyFile)
			}
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("private key " + keyFile + " holds no private key (it is a public key)")
	}
	return out, nil
}
