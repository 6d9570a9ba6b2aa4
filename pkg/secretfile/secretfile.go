// Package secretfile owns the password files emrkit generates for the accounts it creates
// (the portal's database user, the replication accounts): a password from crypto/rand that
// survives any quoting, written once, atomically, mode 0600, and never rewritten, so a run
// resumed after a crash keeps the password the account was created with.
package secretfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// passwordLength and the base62 alphabet give about 190 bits of randomness, and a
// password that survives any config file, shell or PHP quoting on the portal host.
const (
	passwordLength = 32
	base62         = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// New draws a password from r (crypto/rand in production), without modulo bias.
func New(r io.Reader) (string, error) {
	out := make([]byte, 0, passwordLength)
	buf := make([]byte, 64)
	for len(out) < passwordLength {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("generate a password: %w", err)
		}
		for _, c := range buf {
			// 248 = 4*62: bytes at or above it would favour the first letters.
			if c < 248 && len(out) < passwordLength {
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out), nil
}

// CheckPath refuses a password file path emrkit cannot own: it must be absolute,
// in a directory that is there (emrkit creates no directories it would have to remove).
func CheckPath(path string) error {
	if path == "" || !filepath.IsAbs(path) {
		return fmt.Errorf("password file %q: an absolute path is needed", path)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("password file %s: its directory %s is not there (%w); create it first", path, filepath.Dir(path), errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("password file %s: %s is not a directory", path, filepath.Dir(path))
	}
	return nil
}

// Read returns the password in path (its first line) and whether the file is
// there. A file others may read, or an empty one, is an error naming the fix.
func Read(path string) (string, bool, error) {
	f, err := fsutil.OpenRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat() // of the open file, so a swap after the check cannot slip through
	if err != nil {
		return "", false, fmt.Errorf("password file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("password file %s is not a regular file; remove it and run emrkit again", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", false, fmt.Errorf("password file %s may be read by others (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", false, fmt.Errorf("password file %s: %w", path, err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" || strings.ContainsRune(pw, 0) {
		return "", false, fmt.Errorf("password file %s holds no usable password; remove it and emrkit generates one", path)
	}
	return pw, true, nil
}

// Ensure returns the password in path, first writing a new one (0600,
// atomically) when the file is not there. A file that is there is never rewritten, so a
// run resumed after a crash, or an admin's own password, keeps the password it has.
func Ensure(path string) (string, error) {
	pw, ok, err := Read(path)
	if err != nil || ok {
		return pw, err
	}
	if err := CheckPath(path); err != nil {
		return "", err
	}
	if pw, err = New(rand.Reader); err != nil {
		return "", err
	}
	if err := fsutil.WriteAtomic(path, []byte(pw+"\n"), 0o600, nil); err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return pw, nil
}

// Remove removes path, which may be gone already.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove password file: %w", err)
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
