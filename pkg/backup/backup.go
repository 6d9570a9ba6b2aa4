// Package backup owns emrkit's database backups: `emrkit backup` (optionally encrypted to the
// export key, with retention), the dump every destructive database step takes first (Dump),
// and `emrkit restore`.
//
// A backup is mariadb-dump --single-transaction --routines --triggers --events of the
// database, gzip-compressed in-process, and — encrypted — an OpenPGP message to the export
// public key, all streamed: nothing is buffered whole, in memory or on disk. Credentials
// reach mariadb-dump and mariadb through a 0600 option file, never their argv.
//
// A backup is written as a hidden partial file (".NAME.partial-*", 0600) and renamed into
// place only once mariadb-dump has succeeded and the data is on disk, so a file that looks
// like a backup is one: a failed dump, a full disk or a kill leaves at most a hidden partial
// file, which no listing, retention or restore ever takes for a backup. Writers hold a shared
// flock on the backup directory itself while they write; the next backup that finds no
// writer (its exclusive try succeeds) removes every partial file — a SIGKILLed run's — with
// the option files emrkit 0.6.0 and older wrote beside them.
//
// Names are DATABASE-LABEL-YYYYMMDDTHHMMSS.mmmZ.sql.gz, with .pgp appended when encrypted;
// LABEL says why it was taken ("backup" for `emrkit backup`, "before-undo-security",
// "before-migrate-down-middle-names", "before-purge" ...). Retention counts per database and
// label, so routine backups never push out the one taken before a destructive step.
package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ProtonMail/go-crypto/openpgp"
	kgzip "github.com/klauspost/compress/gzip"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/redact"
)

// Suffixes of the two kinds of backup file.
const (
	PlainSuffix     = ".sql.gz"
	EncryptedSuffix = ".sql.gz.pgp"
)

// ManualLabel labels the backups `emrkit backup` takes.
const ManualLabel = "backup"

// Level is the gzip level of klauspost/compress's gzip, the same format at about five times
// the speed of `gzip -6` and of Go's own compress/gzip (measured on a 97 MB dump: 120 MB/s
// against 22 and 33 MB/s), 2% larger than `gzip -6`. The dump is then the bottleneck
// (mariadb-dump alone: about 75 MB/s), so a second compressing core would buy nothing and
// take the CPU the database server needs.
const Level = 6

// timeFormat is the UTC timestamp in names; it sorts as text in time order.
const timeFormat = "20060102T150405.000Z"

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Options says what Write backs up and how.
type Options struct {
	Database config.Database
	// Dir is the backup directory (paths.backup_dir), created 0700 when missing.
	Dir string
	// Label is the occasion, part of the file name (letters, digits, . _ -).
	Label string
	// Tables limits the dump to these tables (none: the whole database).
	Tables []string
	// Recipients, when not empty, encrypt the backup to these OpenPGP public keys.
	Recipients openpgp.EntityList
	// Keep, when positive, deletes after a successful backup all but the newest Keep
	// backups of the same database and label.
	Keep int
	// Now is the clock for the file name (nil: time.Now).
	Now func() time.Time
	// Log, when set, hears of the leftovers of killed runs that were removed.
	Log io.Writer
}

// Before returns Dump bound to cfg's database and backup dir: the backup the undo of a
// database change takes first, wherever that undo runs (plan, command, maintainer script).
func Before(cfg config.Config) func(ctx context.Context, label string, tables ...string) (string, error) {
	return func(ctx context.Context, label string, tables ...string) (string, error) {
		return Dump(ctx, cfg.Database, cfg.Paths.BackupDir, label, tables...)
	}
}

// Dump writes an unencrypted backup of db (or only tables) to dir and returns its path; it is
// the backup every destructive database step takes first.
func Dump(ctx context.Context, db config.Database, dir, label string, tables ...string) (string, error) {
	return Write(ctx, Options{Database: db, Dir: dir, Label: label, Tables: tables})
}

// Write takes one backup as o says and returns its path.
func Write(ctx context.Context, o Options) (string, error) {
	db := o.Database
	if err := mariadb.ValidIdentifier(db.Name); err != nil {
		return "", fmt.Errorf("backup: database.name: %w", err)
	}
	for _, t := range o.Tables {
		if err := mariadb.ValidIdentifier(t); err != nil {
			return "", fmt.Errorf("backup: table: %w", err)
		}
	}
	if !labelRE.MatchString(o.Label) {
		return "", fmt.Errorf("backup: label %q: use letters, digits, . _ - (at most 64)", o.Label)
	}
	// Clear errors first: a server that is not there, before any file is made.
	conn, err := mariadb.Open(ctx, db)
	if err != nil {
		return "", fmt.Errorf("backup of %s: %w", db.Name, err)
	}
	conn.Close()

	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return "", fmt.Errorf("backup: %w; set paths.backup_dir to a writable directory", err)
	}
	swept, err := Sweep(o.Dir)
	if err != nil {
		return "", err
	}
	for _, f := range swept {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "removed %s, left by a backup that was killed\n", f)
		}
	}
	writing, err := lockDir(o.Dir, unix.LOCK_SH)
	if err != nil {
		return "", err
	}
	defer writing.Close()
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	name := db.Name + "-" + o.Label + "-" + now().UTC().Format(timeFormat) + PlainSuffix
	if len(o.Recipients) > 0 {
		name = strings.TrimSuffix(name, PlainSuffix) + EncryptedSuffix
	}
	final := filepath.Join(o.Dir, name)
	partial, err := os.CreateTemp(o.Dir, "."+name+".partial-*") // 0600
	if err != nil {
		return "", fmt.Errorf("backup: cannot write in %s (%v); set paths.backup_dir to a writable directory", o.Dir, unwrapPath(err))
	}
	keep := false
	defer func() {
		if !keep {
			partial.Close()
			os.Remove(partial.Name())
		}
	}()
	if err := partial.Chmod(0o600); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}

	// file <- buffer <- [OpenPGP] <- gzip <- mariadb-dump
	buf := bufio.NewWriterSize(partial, 1<<20)
	var sink io.Writer = buf
	var enc io.WriteCloser
	if len(o.Recipients) > 0 {
		enc, err = encrypt(buf, o.Recipients, strings.TrimSuffix(name, ".pgp"))
		if err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
		sink = enc
	}
	zw, _ := kgzip.NewWriterLevel(sink, Level)
	args := append([]string{"--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
		"--", db.Name}, o.Tables...)
	cmd, done, err := mariadb.Command(ctx, db, "mariadb-dump", args...)
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	defer done()
	var stderr limitedBuffer
	// A write error (a full disk) stops the copy and closes the pipe: mariadb-dump dies of
	// SIGPIPE rather than finishing a dump nobody can store. The pipe is read here, not by
	// os/exec, so that it can be grown (pipe_linux.go).
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if f, ok := out.(*os.File); ok {
		growPipe(f)
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("backup of %s failed: %w", db.Name, err)
	}
	w := &errWriter{w: zw}
	_, copyErr := io.Copy(w, out)
	out.Close()
	runErr := cmd.Wait()
	if w.err != nil {
		return "", fmt.Errorf("backup of %s failed writing %s: %v (check free space in %s)", db.Name, final, unwrapPath(w.err), o.Dir)
	}
	if copyErr != nil && runErr == nil {
		runErr = copyErr
	}
	if runErr != nil {
		return "", fmt.Errorf("backup of %s failed: %v: %s", db.Name, runErr, redact.SQLText(stderr.String()))
	}
	closers := []io.Closer{zw}
	if enc != nil {
		closers = append(closers, enc)
	}
	for _, c := range closers {
		if err := c.Close(); err != nil {
			return "", fmt.Errorf("backup of %s failed writing %s: %v (check free space in %s)", db.Name, final, unwrapPath(err), o.Dir)
		}
	}
	if err := finish(buf, partial); err != nil {
		return "", fmt.Errorf("backup of %s failed writing %s: %v (check free space in %s)", db.Name, final, unwrapPath(err), o.Dir)
	}
	if err := os.Rename(partial.Name(), final); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	keep = true
	if err := fsutil.SyncDir(o.Dir); err != nil {
		return final, err
	}
	if o.Keep > 0 {
		if _, err := Prune(o.Dir, db.Name, o.Label, o.Keep); err != nil {
			return final, fmt.Errorf("backup written to %s, but retention failed: %w", final, err)
		}
	}
	return final, nil
}

// errWriter remembers the first write error, so that it — not mariadb-dump's SIGPIPE — is
// what the caller reports.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func finish(buf *bufio.Writer, f *os.File) error {
	if err := buf.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// unwrapPath turns "write /x/.y.partial-123: no space left on device" into the errno, which
// is what the admin needs (the caller names the file).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// lockDir takes an flock on the backup directory itself — shared while a backup is written
// (unix.LOCK_SH, waiting), exclusive to sweep (unix.LOCK_EX|unix.LOCK_NB) — which leaves no
// file behind, and which the kernel drops with the process, however it ends.
func lockDir(dir string, how int) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Sweep removes from dir what killed runs left — partial backups, and the client option files
// of emrkit 0.6.0 and older ("emrkit-client-*.cnf", each a copy of the database password) —
// and returns what it removed. While any backup is being written it removes nothing.
func Sweep(dir string) ([]string, error) {
	lock, err := lockDir(dir, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, name)
		oldOptions := strings.HasPrefix(name, "emrkit-client-") && strings.HasSuffix(name, ".cnf")
		partial := strings.HasPrefix(name, ".") && strings.Contains(name, PlainSuffix) && strings.Contains(name, ".partial-")
		if !oldOptions && !partial {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("backup: remove the leftover %s: %w", path, err)
		}
		removed = append(removed, path)
	}
	if len(removed) > 0 {
		return removed, fsutil.SyncDir(dir)
	}
	return nil, nil
}

// File is one backup in the backup directory.
type File struct {
	Path      string
	Database  string
	Label     string
	Time      time.Time
	Encrypted bool
}

var nameRE = regexp.MustCompile(`^([A-Za-z0-9_$]{1,64})-([A-Za-z0-9][A-Za-z0-9._-]{0,63})-(\d{8}T\d{6}\.\d{3}Z)\.sql\.gz(\.pgp)?$`)

// Parse reads a backup's database, label and time from its file name.
func Parse(path string) (File, bool) {
	m := nameRE.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return File{}, false
	}
	t, err := time.Parse(timeFormat, m[3])
	if err != nil {
		return File{}, false
	}
	return File{Path: path, Database: m[1], Label: m[2], Time: t, Encrypted: m[4] != ""}, true
}

// List returns the backups in dir, oldest first; partial files and anything else are not
// backups.
func List(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var out []File
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if f, ok := Parse(filepath.Join(dir, e.Name())); ok {
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b File) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// Prune deletes all but the newest keep backups of database with label in dir and returns
// what it deleted. Other labels, other databases, partial files and unrelated files are
// never touched. A label is matched whole: "backup" does not match "before-backup".
func Prune(dir, database, label string, keep int) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("backup: retention must keep at least 1 backup, not %d", keep)
	}
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var mine []File
	for _, f := range all {
		if f.Database == database && f.Label == label {
			mine = append(mine, f)
		}
	}
	var removed []string
	for _, f := range mine[:max(len(mine)-keep, 0)] {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("backup: retention: %w", err)
		}
		removed = append(removed, f.Path)
	}
	if len(removed) > 0 {
		return removed, fsutil.SyncDir(dir)
	}
	return removed, nil
}
