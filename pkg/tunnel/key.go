package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// keyDesired is what the journal keeps of the key: never the key itself, only where it is
// and the comment that marks it as emrkit's (with a nonce, so a key an admin generated in
// its place, even with the same command, is never taken for emrkit's).
type keyDesired struct {
	Path    string `json:"path"`
	User    string `json:"user"`
	Nonce   string `json:"nonce"`
	Comment string `json:"comment"`
}

type keyBefore struct {
	Present bool `json:"present"`
}

// KeyStep gives the tunnel a passphrase-less ed25519 key, Env.Home/id_ed25519, owned by
// Env.SystemUser with mode 0600. It is a machine key: the portal host's authorized_keys
// restricts it to the tunnel's ports. A key that is already there is used as it is.
type KeyStep struct {
	Env          Env
	SinceVersion string
}

func (s KeyStep) Kind() string   { return KeyKind }
func (s KeyStep) Target() string { return s.Env.KeyPath() }
func (s KeyStep) ID() string     { return KeyKind + ":" + s.Env.KeyPath() }
func (s KeyStep) Since() string  { return s.SinceVersion }
func (s KeyStep) Describe() string {
	return fmt.Sprintf("generate the portal tunnel's ssh key %s", s.Env.KeyPath())
}

// Preflight refuses a key that is there but unusable: emrkit never replaces a key it did not
// make (it may be the one the portal host trusts).
func (s KeyStep) Preflight(ctx context.Context) error {
	if _, err := os.Stat(sshKeygenPath); err != nil {
		return fmt.Errorf("%s is missing; apt install openssh-client", sshKeygenPath)
	}
	_, err := s.Check(ctx)
	return err
}

// Check reports whether a usable key is there: a regular file, 0600, owned by the system user
// (once it exists), readable without a passphrase.
func (s KeyStep) Check(ctx context.Context) (bool, error) {
	path := s.Env.KeyPath()
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tunnel key: %w", err)
	}
	fix := fmt.Sprintf("; fix it (chown %[1]s:%[1]s %[2]s; chmod 600 %[2]s) or move it away for emrkit to make a new one", s.Env.SystemUser, path)
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("tunnel key %s is not a regular file%s", path, fix)
	}
	if fi.Mode().Perm() != 0o600 {
		return false, fmt.Errorf("tunnel key %s has mode %04o, not 0600%s", path, fi.Mode().Perm(), fix)
	}
	a, err := lookupAccount(s.Env.SystemUser)
	switch {
	case errors.Is(err, errNoAccount):
		// A dry run before the user exists: ownership is checked once it does.
	case err != nil:
		return false, err
	default:
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != a.UID {
			return false, fmt.Errorf("tunnel key %s is owned by uid %d, not %s%s", path, st.Uid, s.Env.SystemUser, fix)
		}
	}
	// -P '' is the empty passphrase, not a secret: a key with one fails instead of prompting.
	if _, err := run(ctx, nil, sshKeygenPath, "-y", "-P", "", "-f", path); err != nil {
		return false, fmt.Errorf("tunnel key %s is not usable without a passphrase (%v)%s", path, err, fix)
	}
	return true, nil
}

func (s KeyStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	n := hex.EncodeToString(nonce)
	d, err := json.Marshal(keyDesired{Path: s.Env.KeyPath(), User: s.Env.SystemUser, Nonce: n,
		Comment: fmt.Sprintf("%s@%s %s", s.Env.SystemUser, host, n)})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(keyBefore{})
	return d, b, err
}

// keygenDir is where Apply makes the key before it renames it into place: in the same
// directory (rename is atomic), private to root, named after the nonce so a resumed run
// and undo find what an interrupted one left.
func keygenDir(d keyDesired) string {
	return filepath.Join(filepath.Dir(d.Path), ".emrkit-keygen-"+d.Nonce)
}

// Apply makes the key as root in a private directory, hands it to the system user and
// renames it into place, the public half first: a crash leaves no key or a whole one.
func (s KeyStep) Apply(ctx context.Context, desired json.RawMessage) error {
	var d keyDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return fmt.Errorf("tunnel key: desired state: %w", err)
	}
	if _, err := os.Lstat(d.Path); err == nil {
		return fmt.Errorf("tunnel key %s appeared while emrkit was about to make it; emrkit does not overwrite keys", d.Path)
	}
	a, err := lookupAccount(d.User)
	if err != nil {
		return fmt.Errorf("tunnel key: owner %s: %w", d.User, err)
	}
	dir := keygenDir(d)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, KeyFile)
	if _, err := run(ctx, nil, sshKeygenPath, "-t", "ed25519", "-N", "", "-q", "-C", d.Comment, "-f", tmp); err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{tmp, 0o600}, {tmp + ".pub", 0o644}} {
		if err := settle(f.path, f.mode, a); err != nil {
			return fmt.Errorf("tunnel key: %w", err)
		}
	}
	if err := os.Rename(tmp+".pub", d.Path+".pub"); err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	if err := os.Rename(tmp, d.Path); err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	return fsutil.SyncDir(filepath.Dir(d.Path))
}

// settle gives path its mode and owner and makes its content durable.
func settle(path string, mode os.FileMode, a *account) error {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Chown(a.UID, a.GID); err != nil {
		return err
	}
	return f.Sync()
}

// KeyUndoer removes the key while it is the one emrkit made.
type KeyUndoer struct{ Env Env }

func (KeyUndoer) Undo(_ context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, _, err := journal.Decode[keyDesired, keyBefore](e)
	if err != nil {
		return 0, "", err
	}
	if d.Nonce == "" || d.Comment == "" {
		return 0, "", fmt.Errorf("journal entry %s: no key comment", e.ID)
	}
	if err := os.RemoveAll(keygenDir(d)); err != nil {
		return 0, "", err
	}
	_, comment, err := readPrivateKey(d.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// The key never landed (a crash before the private half was renamed into place).
		if err := removePublicIfOurs(d); err != nil {
			return 0, "", err
		}
		return step.AlreadyBefore, "", nil
	case err != nil || comment != d.Comment:
		return step.Kept, d.Path + " was replaced since emrkit made it", nil
	}
	if err := os.Remove(d.Path); err != nil {
		return 0, "", fmt.Errorf("remove %s: %w", d.Path, err)
	}
	if err := removePublicIfOurs(d); err != nil {
		return 0, "", err
	}
	return step.Restored, "", fsutil.SyncDir(filepath.Dir(d.Path))
}

// removePublicIfOurs removes the public half while it carries emrkit's comment.
func removePublicIfOurs(d keyDesired) error {
	data, err := fsutil.ReadFile(d.Path+".pub", fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if f := strings.SplitN(strings.TrimSpace(string(data)), " ", 3); len(f) == 3 && f[2] == d.Comment {
		if err := os.Remove(d.Path + ".pub"); err != nil {
			return fmt.Errorf("remove %s.pub: %w", d.Path, err)
		}
	}
	return nil
}

func (KeyUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[keyDesired, keyBefore](e)
	if err != nil {
		return false, err
	}
	_, comment, err := readPrivateKey(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil && comment == d.Comment, nil
}

// readPrivateKey reads the public blob and the comment of an unencrypted ed25519 key in
// OpenSSH's format (PROTOCOL.key), which is what ssh-keygen writes. Other keys are an error:
// they are not emrkit's.
func readPrivateKey(path string) (pub []byte, comment string, err error) {
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if err != nil {
		return nil, "", err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		return nil, "", errors.New("not an OpenSSH private key")
	}
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(block.Bytes, []byte(magic)) {
		return nil, "", errors.New("not an OpenSSH private key")
	}
	r := wire(block.Bytes[len(magic):])
	cipher, err1 := r.string()
	kdf, err2 := r.string()
	_, err3 := r.string() // kdf options
	n, err4 := r.uint32()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, "", err
	}
	if string(cipher) != "none" || string(kdf) != "none" || n != 1 {
		return nil, "", errors.New("an encrypted key or several keys")
	}
	if pub, err = r.string(); err != nil {
		return nil, "", err
	}
	priv, err := r.string()
	if err != nil {
		return nil, "", err
	}
	p := wire(priv)
	c1, err1 := p.uint32()
	c2, err2 := p.uint32()
	typ, err3 := p.string()
	if err := errors.Join(err1, err2, err3); err != nil || c1 != c2 || string(typ) != "ssh-ed25519" {
		return nil, "", errors.New("not an unencrypted ed25519 key")
	}
	_, err1 = p.string() // public key
	_, err2 = p.string() // private key
	c, err3 := p.string()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, "", err
	}
	return pub, string(c), nil
}

// fingerprint is a public key blob's SHA256 fingerprint as ssh-keygen -l prints it.
func fingerprint(blob []byte) string {
	h := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
}
