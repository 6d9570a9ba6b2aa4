package backup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
)

// ErrNeedKey is returned for an encrypted backup when no private key was given.
var ErrNeedKey = errors.New("the backup is encrypted; give the export private key (--key FILE, and --passphrase-file FILE if it has a passphrase)")

// completed is how every complete mariadb-dump ends (unless run with --skip-comments, which
// emrkit never does).
var completed = []byte("-- Dump completed")

// OpenSQL returns the SQL a backup holds, decrypting (with keys) and decompressing as it is
// read. Only reading to the end verifies it (the OpenPGP MDC, gzip's CRC): see Verify.
func OpenSQL(path string, keys openpgp.EntityList) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(64)
	var compressed io.Reader = br
	if !bytes.HasPrefix(head, []byte{0x1f, 0x8b}) { // not gzip: an OpenPGP message
		if len(keys) == 0 {
			f.Close()
			return nil, ErrNeedKey
		}
		var r io.Reader = br
		if bytes.HasPrefix(bytes.TrimSpace(head), []byte("-----BEGIN PGP")) {
			block, err := armor.Decode(br)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("backup %s: %w", path, err)
			}
			r = block.Body
		}
		md, err := openpgp.ReadMessage(r, keys, nil, pgpConfig())
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("backup %s: cannot decrypt (%v); is it encrypted to this key?", path, err)
		}
		compressed = md.UnverifiedBody
	}
	zr, err := gzip.NewReader(compressed)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("backup %s is not a gzip-compressed dump: %w", path, err)
	}
	return &sqlReader{Reader: zr, close: f.Close}, nil
}

type sqlReader struct {
	io.Reader
	close func() error
}

func (r *sqlReader) Close() error { return r.close() }

// Verify reads the whole backup — decrypting, decompressing, checking the OpenPGP integrity
// code and gzip's CRC — and checks that it ends as a complete mariadb-dump does. It returns
// the size of the SQL. Restore verifies before it touches any database: a truncated or
// tampered backup is refused, not half restored.
func Verify(path string, keys openpgp.EntityList) (int64, error) {
	r, err := OpenSQL(path, keys)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	t := &tail{}
	n, err := io.Copy(t, r)
	if err != nil {
		return n, fmt.Errorf("backup %s is damaged or incomplete: %v", path, err)
	}
	if !bytes.Contains(t.buf, completed) {
		return n, fmt.Errorf("backup %s is incomplete: it does not end with mariadb-dump's %q line", path, completed)
	}
	return n, nil
}

// tail keeps the last bytes written to it.
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) (int, error) {
	const keep = 256
	t.buf = append(t.buf, p[max(len(p)-keep, 0):]...)
	if len(t.buf) > keep {
		t.buf = t.buf[len(t.buf)-keep:]
	}
	return len(p), nil
}

// RestoreOptions says what Restore restores where.
type RestoreOptions struct {
	// Database reaches the server (socket, credentials); its Name is the database restored
	// into unless Target is set.
	Database config.Database
	// File is the backup (.sql.gz, or .sql.gz.pgp with Keys).
	File string
	// Target is the database to restore into ("" = Database.Name); created when missing.
	Target string
	// Keys are the unlocked private keys for an encrypted backup.
	Keys openpgp.EntityList
	// Verified says the caller has just run Verify on File (Restore then skips its own pass).
	Verified bool
}

// Encrypted reports whether path holds an OpenPGP message rather than a plain gzip dump.
func Encrypted(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err != nil {
		return false, fmt.Errorf("backup %s: %w", path, err)
	}
	return !bytes.Equal(head, []byte{0x1f, 0x8b}), nil
}

// Restore verifies File, creates the target database when missing, and loads the dump into
// it with the mariadb client. Tables the dump holds are replaced (mariadb-dump writes DROP
// TABLE IF EXISTS before each); other tables of the target are left alone.
func Restore(ctx context.Context, o RestoreOptions) error {
	target := o.Target
	if target == "" {
		target = o.Database.Name
	}
	if err := mariadb.ValidIdentifier(target); err != nil {
		return fmt.Errorf("restore: database: %w", err)
	}
	if !o.Verified {
		if _, err := Verify(o.File, o.Keys); err != nil {
			return fmt.Errorf("restore: %w; nothing was restored", err)
		}
	}
	server := o.Database
	server.Name = ""
	db, err := mariadb.Open(ctx, server)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+target+"`")
	db.Close()
	if err != nil {
		return fmt.Errorf("restore: create database %s: %w", target, err)
	}
	defaults, cleanup, err := mariadb.DefaultsFile("", server)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer cleanup()
	r, err := OpenSQL(o.File, o.Keys)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, "mariadb", "--defaults-extra-file="+defaults, "--batch", target)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("restore of %s into %s failed: %v: %s; the database may be partly restored — restore again, or from another backup",
			o.File, target, err, oneLine(stderr.String()))
	}
	return nil
}

// Exists reports whether database name exists on the server db reaches, and how many tables
// it has.
func Exists(ctx context.Context, db config.Database, name string) (bool, int, error) {
	server := db
	server.Name = ""
	conn, err := mariadb.Open(ctx, server)
	if err != nil {
		return false, 0, err
	}
	defer conn.Close()
	var schemas, tables int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&schemas); err != nil {
		return false, 0, err
	}
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", name).Scan(&tables); err != nil {
		return false, 0, err
	}
	return schemas > 0, tables, nil
}
