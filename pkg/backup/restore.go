package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-sql-driver/mysql"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/progress"
)

// Summary is what reading a whole backup found.
type Summary struct {
	// Size is the SQL's size in bytes.
	Size int64
	// Database is the database the dump holds, from its header ("" when it names none).
	Database string
}

// StatementLimit is the largest statement the server db reaches accepts (max_allowed_packet):
// a backup holding a larger one cannot be restored there, so reading stops at it.
func StatementLimit(ctx context.Context, db config.Database) (int64, error) {
	server := db
	server.Name = ""
	conn, err := mariadb.Open(ctx, server)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return maxPacket(ctx, conn)
}

func maxPacket(ctx context.Context, conn *sql.DB) (int64, error) {
	var n int64
	if err := conn.QueryRowContext(ctx, "SELECT @@global.max_allowed_packet").Scan(&n); err != nil {
		return 0, fmt.Errorf("read max_allowed_packet: %w", err)
	}
	return n, nil
}

// Verify reads the whole backup — decrypting, decompressing, checking the OpenPGP integrity
// code and gzip's CRC, and scanning every statement (none over limit bytes, none leaving the
// database) — and checks that it ends as a complete mariadb-dump does. Memory stays bounded
// whatever the file holds.
func Verify(ctx context.Context, path string, keys openpgp.EntityList, limit int64) (Summary, error) {
	r, err := OpenSQL(path, keys)
	if err != nil {
		return Summary{}, err
	}
	defer r.Close()
	sc := NewScanner(limit)
	sc.noDigests = true
	n, err := stream(ctx, path, r, sc)
	return summarize(path, sc, n), err
}

// summarize is what reading path through sc (n bytes of SQL) found.
func summarize(path string, sc *Scanner, n int64) Summary {
	sum := Summary{Size: n, Database: sc.Database()}
	if f, ok := Parse(path); ok && sum.Database == "" {
		sum.Database = f.Database // a dump without comments: the name emrkit gave it
	}
	return sum
}

// RestoreOptions says what Restore restores where.
type RestoreOptions struct {
	// Database reaches the server (socket, credentials); its Name is the database restored
	// into unless Target is set.
	Database config.Database
	// File is the backup (.sql.gz, or .sql.gz.pgp with Keys).
	File string
	// Target is the database to restore into, named by the admin; "" means Database.Name,
	// which a dump of another database is refused for (SourceError).
	Target string
	// Keys are the unlocked private keys for an encrypted backup.
	Keys openpgp.EntityList
	// Checked is the caller's Verify of File, just run: Restore then reads it only to load it,
	// into the database as it is. nil: Restore checks it itself (see Restore).
	Checked *Summary
	// Progress gets how far the load is (MB of SQL; nil: nowhere), rewritten in place when
	// Interactive.
	Progress    io.Writer
	Interactive bool
}

// SourceError refuses to restore, into the database the configuration names, a dump that
// holds another one (or does not say which it holds) — a slip that would put one clinic's
// or one test's tables over another's.
type SourceError struct {
	File, Source, Target string
}

func (e *SourceError) Error() string {
	if e.Source == "" {
		return fmt.Sprintf("backup %s does not say which database it holds (its header names none); name the database to restore into with --database %s (or another)",
			e.File, e.Target)
	}
	return fmt.Sprintf("backup %s holds database %s, not %s; to restore it into %s anyway give --database %s, or --database %s to restore it as it was",
		e.File, e.Source, e.Target, e.Target, e.Target, e.Source)
}

// CheckSource refuses (a *SourceError) a restore of file, which holds database source, into
// target when target was not named explicitly and differs.
func CheckSource(file, source, target string, explicit bool) error {
	if explicit || source == target {
		return nil
	}
	return &SourceError{File: file, Source: source, Target: target}
}

// Restore loads File into the target database over several connections at once (see
// loadDump), and returns what it read. Tables the dump holds are replaced (mariadb-dump
// writes DROP TABLE IF EXISTS before each); other tables of the target are left alone.
//
// A damaged backup is never half restored, in one of two ways:
//   - Into a database that is not there (a new server's, after a disaster), Restore creates
//     it and reads the backup once, checking every statement as it loads (the checks of
//     Verify); on any failure it drops the database it created, so nothing is left.
//   - Into one that is there, nothing may be replaced before the whole backup is known good:
//     Restore verifies it first (unless the caller just did, Checked), then loads it.
func Restore(ctx context.Context, o RestoreOptions) (Summary, error) {
	target := o.Target
	if target == "" {
		target = o.Database.Name
	}
	if err := mariadb.ValidIdentifier(target); err != nil {
		return Summary{}, fmt.Errorf("restore: database: %w", err)
	}
	server := o.Database
	server.Name = ""
	db, err := mariadb.Open(ctx, server)
	if err != nil {
		return Summary{}, fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	limit, err := maxPacket(ctx, db)
	if err != nil {
		return Summary{}, fmt.Errorf("restore: %w", err)
	}
	job := loadJob{server: server, target: target, file: o.File, keys: o.Keys, limit: limit}
	created := false
	if o.Checked == nil {
		if created, err = createDatabase(ctx, db, target); err != nil {
			return Summary{}, fmt.Errorf("restore: create database %s: %w", target, err)
		}
	}
	if !created {
		return restoreOver(ctx, db, o, job)
	}
	job.meter = progress.NewMeter(o.Progress, o.Interactive, "restore "+target, progress.Megabytes, -1)
	job.admit = func(sc *Scanner) error {
		return CheckSource(o.File, summarize(o.File, sc, 0).Database, target, o.Target != "")
	}
	sc, n, err := loadDump(ctx, job)
	if err == nil {
		job.meter.Finish()
		return summarize(o.File, sc, n), nil
	}
	if _, derr := db.ExecContext(context.WithoutCancel(ctx), "DROP DATABASE `"+target+"`"); derr != nil {
		return Summary{}, fmt.Errorf("restore of %s into the new database %s failed: %w; dropping what was loaded failed too (%v): drop database %s by hand", o.File, target, err, derr, target)
	}
	if errors.Is(err, ErrInterrupted) {
		return Summary{}, fmt.Errorf("restore of %s into %s interrupted; the database emrkit created for it is removed again", o.File, target)
	}
	if _, refused := errors.AsType[*LoadError](err); refused {
		// Bytes altered on the way reach the server before the checksum at the end says so:
		// when the rest of the backup shows it damaged, that is the cause to report.
		if _, verr := Verify(ctx, o.File, o.Keys, limit); verr != nil && !errors.Is(verr, ErrInterrupted) {
			err = verr
		}
	}
	return Summary{}, fmt.Errorf("restore: %w; nothing was restored (the database emrkit created for it is removed again)", err)
}

// restoreOver verifies File (unless o.Checked says the caller just did) before it loads it
// into the target, which is there already.
func restoreOver(ctx context.Context, db *sql.DB, o RestoreOptions, job loadJob) (Summary, error) {
	sum := o.Checked
	if sum == nil {
		s, err := Verify(ctx, o.File, o.Keys, job.limit)
		if err != nil {
			return Summary{}, fmt.Errorf("restore: %w; nothing was restored", err)
		}
		sum = &s
	}
	if err := CheckSource(o.File, sum.Database, job.target, o.Target != ""); err != nil {
		return Summary{}, fmt.Errorf("restore: %w; nothing was restored", err)
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+job.target+"`"); err != nil {
		return Summary{}, fmt.Errorf("restore: create database %s: %w", job.target, err)
	}
	job.meter = progress.NewMeter(o.Progress, o.Interactive, "restore "+job.target, progress.Megabytes, sum.Size)
	_, _, err := loadDump(ctx, job)
	if err == nil {
		job.meter.Finish()
	}
	if errors.Is(err, ErrInterrupted) {
		return Summary{}, fmt.Errorf("restore of %s into %s interrupted; the database may be partly restored — restore again", o.File, job.target)
	}
	if err != nil {
		return Summary{}, fmt.Errorf("restore of %s into %s failed: %w; the database may be partly restored — restore again, or from another backup", o.File, job.target, err)
	}
	return *sum, nil
}

// createDatabase creates database name and reports true, or reports false when it is there
// already.
func createDatabase(ctx context.Context, db *sql.DB, name string) (bool, error) {
	_, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`")
	if my, ok := errors.AsType[*mysql.MySQLError](err); ok && my.Number == erDBCreateExists {
		return false, nil
	}
	return err == nil, err
}

// erDBCreateExists is MariaDB's "Can't create database; database exists".
const erDBCreateExists = 1007

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
