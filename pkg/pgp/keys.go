package pgp

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	"github.com/emrkit/emrkit/pkg/fsutil"
)

// Algorithm is the kind of key emrkit generates. Both are what GnuPG 2.2 reads (design
// section 10): v4 keys, RSA or EdDSA "legacy" on Curve25519 with an ECDH subkey.
type Algorithm string

const (
	RSA3072    Algorithm = "rsa3072"
	Curve25519 Algorithm = "curve25519"
)

// DefaultAlgorithm is GnuPG 2.2's own default, readable by every OpenPGP tool an admin may
// decrypt with.
const DefaultAlgorithm = RSA3072

// s2kCount is the iteration count protecting generated private keys and symmetric
// exports (the largest OpenPGP can encode; the passphrases are random anyway).
const s2kCount = 65011712

// writeConfig is what emrkit writes with: v4, AES-256, iterated+salted S2K, no AEAD — every
// choice GnuPG 2.2 accepts.
func writeConfig(algo Algorithm) (*packet.Config, error) {
	c := &packet.Config{
		DefaultHash:   crypto.SHA256,
		DefaultCipher: packet.CipherAES256,
		S2KConfig:     &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: s2kCount},
	}
	switch algo {
	case RSA3072, "":
		c.Algorithm, c.RSABits = packet.PubKeyAlgoRSA, 3072
	case Curve25519:
		c.Algorithm, c.Curve = packet.PubKeyAlgoEdDSA, packet.Curve25519
	default:
		return nil, fmt.Errorf("key algorithm %q: use %s or %s", algo, RSA3072, Curve25519)
	}
	return c, nil
}

// uidForm is "Name", "Name <email>" or "Name (comment) <email>".
var uidForm = regexp.MustCompile(`^([^()<>]*?)\s*(?:\(([^()<>]*)\))?\s*(?:<([^()<>\s]*)>)?$`)

// splitUID parses a user id into what go-crypto builds one from.
func splitUID(uid string) (name, comment, email string, err error) {
	m := uidForm.FindStringSubmatch(strings.TrimSpace(uid))
	if m == nil || m[1] == "" || strings.ContainsAny(uid, "\x00\n\r") {
		return "", "", "", fmt.Errorf("pgp.uid: %q is not a user id like 'OSCAR Export <root@localhost>'", uid)
	}
	return m[1], m[2], m[3], nil
}

// KeySet is a generated key: the public key, the private key locked with the passphrase,
// both armored, and the passphrase.
type KeySet struct {
	Public, Private, Passphrase []byte
	Fingerprint                 string
}

// GenerateKey makes a v4 key for uid with a primary (certify, sign) key and an encryption
// subkey, and locks the private key with a new random passphrase.
func GenerateKey(uid string, algo Algorithm) (KeySet, error) {
	name, comment, email, err := splitUID(uid)
	if err != nil {
		return KeySet{}, err
	}
	c, err := writeConfig(algo)
	if err != nil {
		return KeySet{}, err
	}
	e, err := openpgp.NewEntity(name, comment, email, c)
	if err != nil {
		return KeySet{}, fmt.Errorf("generate %s key: %w", algo, err)
	}
	pass, err := NewPassphrase()
	if err != nil {
		return KeySet{}, err
	}
	ks := KeySet{Passphrase: pass, Fingerprint: fingerprint(e)}
	if ks.Public, err = armored(openpgp.PublicKeyType, e.Serialize); err != nil {
		return KeySet{}, err
	}
	if err := e.EncryptPrivateKeys(bytes.TrimSpace(pass), c); err != nil {
		return KeySet{}, fmt.Errorf("protect the private key: %w", err)
	}
	ks.Private, err = armored(openpgp.PrivateKeyType, func(w io.Writer) error { return e.SerializePrivateWithoutSigning(w, c) })
	return ks, err
}

func armored(blockType string, write func(io.Writer) error) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, blockType, nil)
	if err != nil {
		return nil, err
	}
	if err := write(w); err != nil {
		return nil, fmt.Errorf("serialize key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// NewPassphrase returns 256 random bits as 43 URL-safe characters and a newline: the form
// gpg's --passphrase-file and emrkit both read (the first line).
func NewPassphrase() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random passphrase: %w", err)
	}
	return []byte(base64.RawURLEncoding.EncodeToString(b) + "\n"), nil
}

// ReadPassphraseFile reads the first line of path.
func ReadPassphraseFile(path string) ([]byte, error) {
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	return firstLine(data, path)
}

func firstLine(data []byte, path string) ([]byte, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return line, nil
}

func fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// readKeys reads armored or binary OpenPGP keys.
func readKeys(data []byte) (openpgp.EntityList, error) {
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(data))
}

// PublicKey is an export key as checked for OSCAR.
type PublicKey struct {
	Entity      *openpgp.Entity
	Fingerprint string
	UserID      string
	// EncryptionKeyIDs are the key ids gpg may encrypt to (the usable encryption subkeys).
	EncryptionKeyIDs map[uint64]bool
}

// ParsePublicKey checks that data is one v4 public key GnuPG 2.2 can encrypt to, and says
// what to do when it is not.
func ParsePublicKey(data []byte, now time.Time) (PublicKey, error) {
	keys, err := readKeys(data)
	if err != nil {
		return PublicKey{}, fmt.Errorf("not an OpenPGP public key (%v); export it with `gpg --armor --export FINGERPRINT`", err)
	}
	if len(keys) != 1 {
		return PublicKey{}, fmt.Errorf("holds %d keys; export exactly one (gpg --armor --export FINGERPRINT)", len(keys))
	}
	e := keys[0]
	fpr := fingerprint(e)
	switch {
	case e.PrivateKey != nil:
		return PublicKey{}, fmt.Errorf("key %s is a private key; give the public key only (gpg --armor --export %s): the private key must not be on the server", fpr, fpr)
	case e.PrimaryKey.Version != 4:
		return PublicKey{}, fmt.Errorf("key %s is a version %d key; GnuPG 2.2 needs a version 4 key", fpr, e.PrimaryKey.Version)
	case e.Revoked(now):
		return PublicKey{}, fmt.Errorf("key %s is revoked; give a current key", fpr)
	}
	enc, ok := e.EncryptionKey(now)
	if !ok {
		return PublicKey{}, fmt.Errorf("key %s has no usable encryption subkey (it can only sign, or it expired); add one with `gpg --quick-add-key %s rsa3072 encr` and export it again", fpr, fpr)
	}
	switch enc.PublicKey.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoECDH, packet.PubKeyAlgoElGamal:
	default:
		return PublicKey{}, fmt.Errorf("key %s encrypts with algorithm %d, which GnuPG 2.2 does not know; use an RSA or cv25519 encryption subkey", fpr, enc.PublicKey.PubKeyAlgo)
	}
	pk := PublicKey{Entity: e, Fingerprint: fpr, EncryptionKeyIDs: map[uint64]bool{}}
	if id := e.PrimaryIdentity(); id != nil {
		pk.UserID = id.Name
	}
	for _, sub := range e.Subkeys {
		if sub.Sig != nil && sub.Sig.FlagsValid && (sub.Sig.FlagEncryptCommunications || sub.Sig.FlagEncryptStorage) {
			pk.EncryptionKeyIDs[sub.PublicKey.KeyId] = true
		}
	}
	pk.EncryptionKeyIDs[enc.PublicKey.KeyId] = true
	return pk, nil
}

// ErrWrongPassphrase is returned when a passphrase does not unlock a key or a message.
var ErrWrongPassphrase = errors.New("wrong passphrase")

// ReadPrivateKey reads an armored or binary private key and unlocks it with passphrase
// (nil: the key must not be locked).
func ReadPrivateKey(data, passphrase []byte) (openpgp.EntityList, error) {
	keys, err := readKeys(data)
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP private key: %v", err)
	}
	var out openpgp.EntityList
	for _, e := range keys {
		if e.PrivateKey == nil {
			continue
		}
		if locked(e) {
			if passphrase == nil {
				return nil, fmt.Errorf("key %s is locked and no passphrase was given", fingerprint(e))
			}
			if err := e.DecryptPrivateKeys(passphrase); err != nil {
				return nil, fmt.Errorf("key %s: %w", fingerprint(e), ErrWrongPassphrase)
			}
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no private key (it is a public key); give the private key the export was encrypted to")
	}
	return out, nil
}

// locked reports whether any of e's private keys needs a passphrase.
func locked(e *openpgp.Entity) bool {
	if e.PrivateKey != nil && e.PrivateKey.Encrypted {
		return true
	}
	for _, s := range e.Subkeys {
		if s.PrivateKey != nil && s.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// PrivateKeyLocked reports whether the private key in data needs a passphrase.
func PrivateKeyLocked(data []byte) (bool, error) {
	keys, err := readKeys(data)
	if err != nil {
		return false, fmt.Errorf("not an OpenPGP private key: %v", err)
	}
	for _, e := range keys {
		if locked(e) {
			return true, nil
		}
	}
	return false, nil
}
