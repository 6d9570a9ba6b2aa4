package pgp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// EncryptSymmetric encrypts r to w with passphrase: AES-256, iterated+salted S2K and an
// integrity-protected (MDC) packet, no AEAD — what `gpg -d` in GnuPG 2.2 reads.
func EncryptSymmetric(w io.Writer, r io.Reader, passphrase []byte, name string, mtime time.Time) error {
	c, err := writeConfig("")
	if err != nil {
		return err
	}
	pt, err := openpgp.SymmetricallyEncrypt(w, passphrase, &openpgp.FileHints{IsBinary: true, FileName: name, ModTime: mtime}, c)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if _, err := io.Copy(pt, r); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	return pt.Close()
}

// OSCAREncrypt is what OSCAR runs in symmetric mode: it writes file.pgp, encrypted with the
// first line of passFile, or fails leaving no file.pgp (OSCAR takes exit 0 and file.pgp as
// success). Paths are relative to the export directory OSCAR runs it in; it needs no
// environment.
func OSCAREncrypt(file, passFile string) error {
	pass, err := ReadPassphraseFile(passFile)
	if err != nil {
		return err
	}
	in, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open export: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out := file + ".pgp"
	return writeVia(out, 0o600, func(w io.Writer) error {
		return EncryptSymmetric(w, bufio.NewReaderSize(in, 1<<20), pass, filepath.Base(file), fi.ModTime())
	})
}

// writeVia writes path through a temporary file in the same directory, renamed into place
// only when write succeeded: a failure leaves nothing behind.
func writeVia(path string, mode os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(fmt.Errorf("write %s: %w", path, err))
	}
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(fmt.Errorf("write %s: %w", path, err))
	}
	if err := tmp.Sync(); err != nil {
		return fail(fmt.Errorf("write %s: %w", path, err))
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fsutil.SyncDir(dir)
}

// Message describes a decrypted message.
type Message struct {
	Symmetric bool     // encrypted with a passphrase
	KeyIDs    []uint64 // the key ids it is encrypted to
	FileName  string   // the name the sender gave
}

// ErrNoKey means none of the given keys can decrypt the message.
var ErrNoKey = errors.New("none of the given keys can decrypt it")

// Decrypt streams the plaintext of an OpenPGP message (binary or armored) from r to w. keys
// are unlocked private keys (may be none); passphrase is asked for, once, when the message
// is encrypted with a passphrase. An integrity failure is an error: the output is then not to
// be trusted, and DecryptFile removes it.
func Decrypt(w io.Writer, r io.Reader, keys openpgp.EntityList, passphrase func() ([]byte, error)) (Message, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var body io.Reader = br
	if head, _ := br.Peek(64); bytes.Contains(head, []byte("-----BEGIN PGP MESSAGE")) {
		block, err := armor.Decode(br)
		if err != nil {
			return Message{}, fmt.Errorf("not an OpenPGP message: %v", err)
		}
		body = block.Body
	}
	asked := false
	prompt := func(locked []openpgp.Key, symmetric bool) ([]byte, error) {
		switch {
		case len(locked) > 0 && !symmetric:
			return nil, errors.New("the private key is locked; give its passphrase")
		case !symmetric:
			return nil, ErrNoKey
		case asked:
			return nil, ErrWrongPassphrase
		case passphrase == nil:
			return nil, errors.New("it is encrypted with a passphrase; give the passphrase file")
		}
		asked = true
		return passphrase()
	}
	md, err := openpgp.ReadMessage(body, keys, prompt, &packet.Config{})
	if err != nil {
		return Message{}, explain(err)
	}
	msg := Message{Symmetric: md.IsSymmetricallyEncrypted, KeyIDs: md.EncryptedToKeyIds}
	if md.LiteralData != nil {
		msg.FileName = md.LiteralData.FileName
	}
	if !md.IsEncrypted {
		return msg, errors.New("it is not encrypted")
	}
	if _, err := io.Copy(w, md.UnverifiedBody); err != nil {
		return msg, explain(err)
	}
	return msg, nil
}

// explain turns go-crypto's errors into what the admin can act on.
func explain(err error) error {
	switch {
	case errors.Is(err, ErrWrongPassphrase), errors.Is(err, ErrNoKey):
		return err
	case errors.Is(err, pgperrors.ErrKeyIncorrect):
		return ErrNoKey
	case errors.Is(err, pgperrors.ErrMDCHashMismatch), errors.Is(err, pgperrors.ErrMDCMissing):
		return fmt.Errorf("integrity check failed: the file is damaged or was altered, or the passphrase is wrong (%v)", err)
	}
	var se pgperrors.StructuralError
	var sig pgperrors.SignatureError
	if errors.As(err, &se) || errors.As(err, &sig) {
		return fmt.Errorf("cannot decrypt: the file is damaged, or the passphrase is wrong (%v)", err)
	}
	return fmt.Errorf("decrypt: %w", err)
}

// DecryptFile decrypts in to out (0600), written through a temporary file so that a wrong
// passphrase or a damaged file leaves nothing behind. out must not exist.
func DecryptFile(in, out string, keys openpgp.EntityList, passphrase func() ([]byte, error)) (Message, error) {
	if _, err := os.Lstat(out); err == nil {
		return Message{}, fmt.Errorf("%s already exists; remove it or name another output with -o", out)
	}
	f, err := os.Open(in)
	if err != nil {
		return Message{}, err
	}
	defer f.Close()
	var msg Message
	err = writeVia(out, 0o600, func(w io.Writer) error {
		var err error
		msg, err = Decrypt(w, f, keys, passphrase)
		return err
	})
	return msg, err
}
