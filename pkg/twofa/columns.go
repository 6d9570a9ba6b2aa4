package twofa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/totp"
)

// ColumnsKind is the journal kind of the 2FA schema change.
const ColumnsKind = "twofa.columns"

// column is one of OSCAR's 2FA columns, with its definition from OSCAR's 2FA SQL, the
// condition its values meet while nobody has used it, and what its type must be to hold what
// emrkit writes there.
type column struct {
	name, definition, unused string
	need                     need
}

// need is what a column's type must be. A column of another type (an int totp_secret) makes
// emrkit's writes fail or its reads fail half-way, so preflight refuses it first.
type need struct {
	text   bool // a string column; otherwise an integer one
	minLen int  // for a string column: the longest value emrkit writes
}

// secretLen is the length of a secret emrkit issues: totp.SecretBytes in unpadded base32.
const secretLen = (totp.SecretBytes*8 + 4) / 5

// columns are added in this order; OSCAR 19.5+ already has them all.
var columns = []column{
	{"totp_enabled", "SMALLINT(1) NOT NULL DEFAULT 0", "`totp_enabled` = 0", need{}},
	{"totp_secret", "VARCHAR(254) NULL", "`totp_secret` IS NULL", need{text: true, minLen: secretLen}},
	{"totp_algorithm", "VARCHAR(50) NOT NULL DEFAULT 'sha1'", "`totp_algorithm` = 'sha1'", need{text: true, minLen: len("sha1")}},
	{"totp_digits", "SMALLINT NOT NULL DEFAULT 6", "`totp_digits` = 6", need{}},
	{"totp_period", "SMALLINT NOT NULL DEFAULT 30", "`totp_period` = 30", need{}},
}

// pinColumn is security.pin as OSCAR defines it: the PIN cycle writes codes there, and undo
// gives the user's own PIN back.
var pinColumn = column{name: "pin", definition: "VARCHAR(255)", need: need{text: true, minLen: totp.Digits}}

// Fixes a wrong-typed column's error names: emrkit adds its own 2FA columns, not OSCAR's others.
const (
	fixOrDrop = "fix the column or drop it so emrkit can add it"
	fixColumn = "fix the column"
)

// isInteger reports whether a DATA_TYPE reads into a Go integer (MariaDB's boolean is tinyint).
func isInteger(dataType string) bool {
	switch dataType {
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		return true
	}
	return false
}

// isText reports whether a DATA_TYPE holds characters as written: binary types pad and
// compare bytes, and other types convert.
func isText(dataType string) bool {
	switch dataType {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		return true
	}
	return false
}

// typeError says why table.c, of type t, cannot hold what emrkit writes there; nil if it can.
func (c column) typeError(table string, t colType, fix string) error {
	oscars := strings.ToLower(strings.Fields(c.definition)[0])
	switch {
	case !c.need.text && !isInteger(t.data):
		return fmt.Errorf("%s.%s is %s, emrkit needs an integer column (%s); %s", table, c.name, t.full, oscars, fix)
	case c.need.text && (!isText(t.data) || t.length.Int64 < int64(c.need.minLen)):
		return fmt.Errorf("%s.%s is %s, emrkit needs a string column of at least %d characters (%s); %s",
			table, c.name, t.full, c.need.minLen, oscars, fix)
	}
	return nil
}

// wrongType returns the error of the first of cols that table has with a type unfit for
// what emrkit writes; the columns table lacks are not its concern.
func wrongType(table string, have map[string]colType, cols []column, fix string) error {
	for _, c := range cols {
		if t, ok := have[c.name]; ok {
			if err := c.typeError(table, t, fix); err != nil {
				return err
			}
		}
	}
	return nil
}

type columnsDesired struct {
	Database string   `json:"database"`
	Table    string   `json:"table"`
	Added    []string `json:"added"` // the columns emrkit adds (was missing)
}

// ColumnsStep makes Table carry OSCAR's five totp_* columns, adding only the missing ones.
// A Required table that does not exist is an error (wrong database); an optional one
// (SecurityArchive on older OSCARs) is left alone.
type ColumnsStep struct {
	DB           *DB
	Table        string
	Required     bool
	SinceVersion string
}

func (s ColumnsStep) Kind() string   { return ColumnsKind }
func (s ColumnsStep) Target() string { return s.DB.Config.Name + "." + s.Table }
func (s ColumnsStep) ID() string     { return ColumnsKind + ":" + s.Target() }
func (s ColumnsStep) Since() string  { return s.SinceVersion }
func (s ColumnsStep) Describe() string {
	return fmt.Sprintf("add OSCAR's 2FA columns to %s", s.Target())
}

// missing returns the 2FA columns Table lacks, or nil when the table is absent and optional.
// A 2FA column Table has with the wrong type is an error: adding the others would be a
// change half-made.
func (s ColumnsStep) missing(ctx context.Context) ([]string, error) {
	if err := mariadb.ValidIdentifier(s.Table); err != nil {
		return nil, err
	}
	have, err := s.DB.tableColumns(ctx, s.Table)
	if err != nil {
		return nil, err
	}
	if have == nil {
		if s.Required {
			return nil, fmt.Errorf("database %s has no %s table; set database.name to OSCAR's database (usually oscar_15)", s.DB.Config.Name, s.Table)
		}
		return nil, nil
	}
	if err := wrongType(s.Table, have, columns, fixOrDrop); err != nil {
		return nil, err
	}
	var out []string
	for _, c := range columns {
		if _, ok := have[c.name]; !ok {
			out = append(out, c.name)
		}
	}
	return out, nil
}

// Preflight checks the database is OSCAR's (a required table exists) and the 2FA columns it
// has can hold what emrkit writes.
func (s ColumnsStep) Preflight(ctx context.Context) error {
	_, err := s.missing(ctx)
	return err
}

func (s ColumnsStep) Check(ctx context.Context) (bool, error) {
	m, err := s.missing(ctx)
	return len(m) == 0, err
}

func (s ColumnsStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	m, err := s.missing(ctx)
	if err != nil {
		return nil, nil, err
	}
	d, err := json.Marshal(columnsDesired{Database: s.DB.Config.Name, Table: s.Table, Added: m})
	return d, json.RawMessage(`{}`), err
}

// Apply adds the journaled columns that are still missing, in one ALTER TABLE.
func (s ColumnsStep) Apply(ctx context.Context, desired json.RawMessage) error {
	var d columnsDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return err
	}
	m, err := s.missing(ctx)
	if err != nil {
		return err
	}
	var adds []string
	for _, c := range columns {
		if slices.Contains(m, c.name) && slices.Contains(d.Added, c.name) {
			adds = append(adds, fmt.Sprintf("ADD COLUMN `%s` %s", c.name, c.definition))
		}
	}
	if len(adds) == 0 {
		return nil
	}
	db, err := s.DB.Get(ctx)
	if err != nil {
		return err
	}
	// Identifiers are validated constants; DDL takes no placeholders.
	s.DB.changed()
	if _, err := db.ExecContext(ctx, fmt.Sprintf("ALTER TABLE `%s` %s", s.Table, strings.Join(adds, ", "))); err != nil {
		return fmt.Errorf("add 2FA columns to %s: %w", s.Table, err)
	}
	return nil
}

// ColumnsUndoer drops the columns emrkit added — each only while no row holds anything
// but its unused default — after backing up the table.
type ColumnsUndoer struct {
	DB *DB
	// Backup dumps the table before the first destructive change and returns the file.
	Backup func(ctx context.Context, table string) (string, error)
}

func (u ColumnsUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	var d columnsDesired
	if err := json.Unmarshal(e.Desired, &d); err != nil {
		return 0, "", fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	db, err := u.DB.Get(ctx)
	var deferred *step.DeferredError
	if errors.As(err, &deferred) {
		return step.Skipped, "database not reachable: " + deferred.Reason, nil
	}
	if err != nil {
		return 0, "", err
	}
	if err := mariadb.ValidIdentifier(d.Table); err != nil {
		return 0, "", err
	}
	have, err := columnsOf(ctx, db, d.Table)
	if err != nil {
		return 0, "", err
	}
	var drop, kept []string
	for _, c := range columns {
		if _, ok := have[c.name]; !ok || !slices.Contains(d.Added, c.name) {
			continue
		}
		var used int
		q := fmt.Sprintf("SELECT COUNT(*) FROM `%s` WHERE NOT (%s)", d.Table, c.unused)
		if err := db.QueryRowContext(ctx, q).Scan(&used); err != nil {
			return 0, "", fmt.Errorf("inspect %s.%s: %w", d.Table, c.name, err)
		}
		if used > 0 {
			kept = append(kept, fmt.Sprintf("%s (%d rows use it)", c.name, used))
		} else {
			drop = append(drop, "DROP COLUMN `"+c.name+"`")
		}
	}
	if len(drop) == 0 && len(kept) == 0 {
		return step.AlreadyBefore, "", nil
	}
	if len(drop) > 0 {
		file, err := u.Backup(ctx, d.Table)
		if err != nil {
			return 0, "", fmt.Errorf("backup before dropping columns of %s: %w", d.Table, err)
		}
		// FORCE rebuilds the table. MariaDB drops columns "instantly" by hiding them in the
		// row format; each add/drop cycle (install, purge, install ...) then costs row size
		// until ALTER TABLE fails with "Row size too large" after some 28 cycles.
		q := fmt.Sprintf("ALTER TABLE `%s` %s, FORCE", d.Table, strings.Join(drop, ", "))
		u.DB.changed()
		if _, err := db.ExecContext(ctx, q); err != nil {
			return 0, "", fmt.Errorf("drop 2FA columns of %s (backup in %s): %w", d.Table, file, err)
		}
	}
	if len(kept) > 0 {
		return step.Kept, "kept columns holding data emrkit did not write: " + strings.Join(kept, ", "), nil
	}
	return step.Restored, "", nil
}

func (u ColumnsUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	var d columnsDesired
	if err := json.Unmarshal(e.Desired, &d); err != nil {
		return false, err
	}
	db, err := u.DB.Get(ctx)
	if err != nil {
		return false, err
	}
	have, err := columnsOf(ctx, db, d.Table)
	if err != nil {
		return false, err
	}
	for _, c := range d.Added {
		if _, ok := have[c]; !ok {
			return false, nil
		}
	}
	return true, nil
}
