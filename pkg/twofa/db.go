// Package twofa owns OSCAR's two-factor login on the database side: the five totp_* columns
// of `security` (and `SecurityArchive`), each user's enrolment (secret + totp_enabled), and
// the PIN cycle that writes the current code into security.pin. Every change is a journaled
// step whose undo is compare-and-swap, so a secret OSCAR's own UI changed since is kept.
package twofa

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
)

// DB is the EMR database shared by one run's steps (mariadb.Shared), with what the run's 2FA
// checks read.
type DB struct {
	mariadb.Shared
	seen checks
}

// NewDB returns the database of cfg, opened on first use.
func NewDB(cfg config.Database) *DB { return &DB{Shared: mariadb.Shared{Config: cfg}} }

// checks is what one run's checks read, once: the columns of each table and every user's 2FA
// state. Every step of a run asks the same questions (each of 200 enrolled users' steps asks
// whether the 2FA columns are there); only emrkit's own writes change the answers meanwhile,
// and each forgets what it changed (DB.changed, DB.changedUser). Capture, Apply and undo
// read afresh.
type checks struct {
	tables map[string]map[string]colType // table -> its columns, nil for a table that is not there
	users  map[string]userState          // lower-cased user name (the column's collation ignores case)
	stale  map[string]bool               // users written since users was read
	names  map[string]bool               // lower-cased user names, for preflights before the 2FA columns
}

// changed forgets everything the run's checks read: emrkit changed the schema.
func (d *DB) changed() { d.seen = checks{} }

// changedUser forgets user's 2FA state: emrkit just wrote it.
func (d *DB) changedUser(user string) {
	if d.seen.stale == nil {
		d.seen.stale = map[string]bool{}
	}
	d.seen.stale[strings.ToLower(user)] = true
}

// tableColumns returns table's columns as the run's checks saw them (nil: no such table).
func (d *DB) tableColumns(ctx context.Context, table string) (map[string]colType, error) {
	if cols, ok := d.seen.tables[table]; ok {
		return cols, nil
	}
	db, err := d.Get(ctx)
	if err != nil {
		return nil, err
	}
	var cols map[string]colType
	ok, err := tableExists(ctx, db, table)
	if err == nil && ok {
		cols, err = columnsOf(ctx, db, table)
	}
	if err != nil {
		return nil, err
	}
	if d.seen.tables == nil {
		d.seen.tables = map[string]map[string]colType{}
	}
	d.seen.tables[table] = cols
	return cols, nil
}

// checkedUser returns user's 2FA state as the run's checks saw it, reading every user's in
// one query the first time.
func (d *DB) checkedUser(ctx context.Context, user string) (userState, error) {
	if d.seen.users == nil || d.seen.stale[strings.ToLower(user)] {
		db, err := d.Get(ctx)
		if err != nil {
			return userState{}, err
		}
		if d.seen.users != nil {
			return readUser(ctx, db, user)
		}
		users, err := readUsers(ctx, db)
		if err != nil {
			return userState{}, err
		}
		d.seen.users = users
	}
	st, ok := d.seen.users[strings.ToLower(user)]
	if !ok {
		return st, noUser(user)
	}
	return st, nil
}

// userExists reports whether user is in security, reading every name in one query the
// first time; it works before the 2FA columns exist.
func (d *DB) userExists(ctx context.Context, user string) (bool, error) {
	if d.seen.names == nil {
		db, err := d.Get(ctx)
		if err != nil {
			return false, err
		}
		rows, err := db.QueryContext(ctx, "SELECT user_name FROM security")
		if err != nil {
			return false, fmt.Errorf("look up OSCAR users: %w", err)
		}
		defer rows.Close()
		names := map[string]bool{}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return false, err
			}
			names[strings.ToLower(n)] = true
		}
		if err := rows.Err(); err != nil {
			return false, err
		}
		d.seen.names = names
	}
	return d.seen.names[strings.ToLower(user)], nil
}

// tableExists reports whether table is in the current database.
func tableExists(ctx context.Context, db *sql.DB, table string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up table %s: %w", table, err)
	}
	return n > 0, nil
}

// colType is a column's type as information_schema.COLUMNS has it.
type colType struct {
	data   string        // DATA_TYPE: "varchar", "int"
	full   string        // COLUMN_TYPE: "varchar(254)", "int(11)"
	length sql.NullInt64 // CHARACTER_MAXIMUM_LENGTH, for string types
}

// columnsOf returns table's columns and their types.
func columnsOf(ctx context.Context, db *sql.DB, table string) (map[string]colType, error) {
	rows, err := db.QueryContext(ctx,
		"SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]colType{}
	for rows.Next() {
		var c string
		var t colType
		if err := rows.Scan(&c, &t.data, &t.full, &t.length); err != nil {
			return nil, fmt.Errorf("columns of %s: %w", table, err)
		}
		cols[c] = t
	}
	return cols, rows.Err()
}

// valueError is a value that does not convert to what emrkit reads it as. It names the
// column and never the value: database/sql's own Scan error quotes the value, and a 2FA row
// holds secrets and PINs.
type valueError struct{ column string }

func (e *valueError) Error() string {
	return fmt.Sprintf("%s holds a value that is not an integer; make it an integer column", e.column)
}

// intColumn scans an integer column (table.column) into dest; NULL reads as 0.
type intColumn[T int | int64] struct {
	column string
	dest   *T
}

func (c intColumn[T]) Scan(v any) error {
	var n sql.NullInt64
	if err := n.Scan(v); err != nil {
		return &valueError{column: c.column}
	}
	*c.dest = T(n.Int64)
	return nil
}

// scanned is err without database/sql's "Scan error on column index" wrapping when a value
// did not convert: the valueError says all, in one line.
func scanned(err error) error {
	var ve *valueError
	if errors.As(err, &ve) {
		return ve
	}
	return err
}
