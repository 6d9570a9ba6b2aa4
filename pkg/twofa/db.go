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

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// DB opens the EMR database on first use and shares the connection among one run's steps.
// A server that is not there, or a database not created yet, defers the steps (the EMR is
// not installed yet); any other failure is an error.
type DB struct {
	Config config.Database
	db     *sql.DB
}

// Get returns the open database.
func (d *DB) Get(ctx context.Context) (*sql.DB, error) {
	if d.db != nil {
		return d.db, nil
	}
	db, err := mariadb.Open(ctx, d.Config)
	if errors.Is(err, mariadb.ErrUnreachable) || errors.Is(err, mariadb.ErrNoDatabase) {
		return nil, &step.DeferredError{Reason: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	d.db = db
	return db, nil
}

// Close closes the connection if it was opened.
func (d *DB) Close() error {
	if d.db == nil {
		return nil
	}
	return d.db.Close()
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

// columnsOf returns the names of table's columns.
func columnsOf(ctx context.Context, db *sql.DB, table string) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx,
		"SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols[c] = true
	}
	return cols, rows.Err()
}
