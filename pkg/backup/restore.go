package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"

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
// database) — and checks that it ends as a complete mariadb-dump does. Restore verifies
// before it touches any database: a truncated or tampered backup is refused (a
// *DamagedError), not half restored. Memory stays bounded whatever the file holds.
func Verify(ctx context.Context, path string, keys openpgp.EntityList, limit int64) (Summary, error) {
	r, err := OpenSQL(path, keys)
	if err != nil {
		return Summary{}, err
	}
	defer r.Close()
	sc := NewScanner(limit)
	sc.noDigests = true
	n, err := stream(ctx, path, r, sc)
	sum := Summary{Size: n, Database: sc.Database()}
	if f, ok := Parse(path); ok && sum.Database == "" {
		sum.Database = f.Database // a dump without comments: the name emrkit gave it
	}
	return sum, err
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
	// Checked is the caller's Verify of File, just run (nil: Restore runs its own).
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

// Restore verifies File, creates the target database when missing, and loads the dump into
// it over several connections at once (see loadDump). Tables the dump holds are replaced (mariadb-dump writes DROP
// TABLE IF EXISTS before each); other tables of the target are left alone.
func Restore(ctx context.Context, o RestoreOptions) error {
	target := o.Target
	if target == "" {
		target = o.Database.Name
	}
	if err := mariadb.ValidIdentifier(target); err != nil {
		return fmt.Errorf("restore: database: %w", err)
	}
	server := o.Database
	server.Name = ""
	db, err := mariadb.Open(ctx, server)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	limit, err := maxPacket(ctx, db)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	sum := o.Checked
	if sum == nil {
		s, err := Verify(ctx, o.File, o.Keys, limit)
		if err != nil {
			return fmt.Errorf("restore: %w; nothing was restored", err)
		}
		sum = &s
	}
	if err := CheckSource(o.File, sum.Database, target, o.Target != ""); err != nil {
		return fmt.Errorf("restore: %w; nothing was restored", err)
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+target+"`"); err != nil {
		return fmt.Errorf("restore: create database %s: %w", target, err)
	}
	meter := progress.NewMeter(o.Progress, o.Interactive, "restore "+target, progress.Megabytes, sum.Size)
	_, err = loadDump(ctx, server, target, o.File, o.Keys, limit, false, meter)
	if err == nil {
		meter.Finish()
	}
	if errors.Is(err, ErrInterrupted) {
		return fmt.Errorf("restore of %s into %s interrupted; the database may be partly restored — restore again", o.File, target)
	}
	if err != nil {
		return fmt.Errorf("restore of %s into %s failed: %w; the database may be partly restored — restore again, or from another backup", o.File, target, err)
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
