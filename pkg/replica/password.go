package replica

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

const (
	passwordLength = 32 // base62: about 190 bits
	base62         = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// passwordRE is what emrkit writes and accepts: it may stand in an SQL string literal and
// in CHANGE MASTER as is.
var passwordRE = regexp.MustCompile(`^[A-Za-z0-9]{16,128}$`)

// newPassword draws a base62 password from crypto/rand without modulo bias.
func newPassword() (string, error) {
	out := make([]byte, 0, passwordLength)
	buf := make([]byte, 64)
	for len(out) < passwordLength {
		if _, err := io.ReadFull(rand.Reader, buf); err != nil {
			return "", fmt.Errorf("generate a replication password: %w", err)
		}
		for _, c := range buf {
			if c < 248 && len(out) < passwordLength { // 248 = 4*62
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out), nil
}

// readPassword returns the password in path and whether the file is there. A file others
// may read, or one emrkit would not have written, is an error naming the fix.
func readPassword(path string) (string, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, fmt.Errorf("password file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("password file %s is not a regular file; remove it and run emrkit apply", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", false, fmt.Errorf("password file %s may be read by others (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", false, fmt.Errorf("password file %s: %w", path, err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	if !passwordRE.MatchString(pw) {
		return "", false, fmt.Errorf("password file %s does not hold a password emrkit wrote (16-128 letters and digits); remove it and run emrkit apply", path)
	}
	return pw, true, nil
}

// ensurePassword returns the password in path, writing a new one (0600 root, atomically)
// when the file is not there. An existing file is never rewritten, so a run resumed after a
// crash keeps the password the account was created with.
func ensurePassword(path string) (string, error) {
	pw, ok, err := readPassword(path)
	if err != nil || ok {
		return pw, err
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("password file %s: directory %s is not there", path, filepath.Dir(path))
	}
	if pw, err = newPassword(); err != nil {
		return "", err
	}
	if err := fsutil.WriteAtomic(path, []byte(pw+"\n"), 0o600, &fsutil.Owner{UID: 0, GID: 0}); err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return pw, nil
}

// removeFile removes path, which may be gone already.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// nativeHash is the mysql_native_password hash of pw, as IDENTIFIED BY PASSWORD takes it:
// the server never sees the password itself, and no statement text holds it.
func nativeHash(pw string) string {
	h1 := sha1.Sum([]byte(pw))
	h2 := sha1.Sum(h1[:])
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}
