package openemr

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// GlobalKind is the journal kind of one of OpenEMR's globals (row gl_index 0 of `globals`).
const GlobalKind = "openemr.global"

type globalDesired struct {
	Database string `json:"database"`
	Name     string `json:"name"`
	Value    string `json:"value"`
}

// globalBefore says whether the row was there and what it held: undo deletes a row emrkit
// inserted and puts back the value of one it updated.
type globalBefore struct {
	Present bool   `json:"present"`
	Value   string `json:"value,omitempty"`
}

// GlobalStep gives OpenEMR's global Name the value Value, as its Globals screen would.
type GlobalStep struct {
	DB           *mariadb.Shared
	Name         string
	Value        int
	SinceVersion string
}

func (s GlobalStep) Kind() string   { return GlobalKind }
func (s GlobalStep) Target() string { return s.DB.Config.Name + ".globals#" + s.Name }
func (s GlobalStep) ID() string     { return GlobalKind + ":" + s.Target() }
func (s GlobalStep) Since() string  { return s.SinceVersion }
func (s GlobalStep) Describe() string {
	return fmt.Sprintf("OpenEMR global %s = %d", s.Name, s.Value)
}

// ReadGlobal returns the row's value, and whether it is there.
func ReadGlobal(ctx context.Context, db *sql.DB, name string) (string, bool, error) {
	var v string
	err := db.QueryRowContext(ctx, "SELECT gl_value FROM globals WHERE gl_name = ? AND gl_index = 0", name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read OpenEMR global %s (is this OpenEMR's database?): %w", name, err)
	}
	return v, true, nil
}

func (s GlobalStep) read(ctx context.Context) (*sql.DB, string, bool, error) {
	db, err := s.DB.Get(ctx)
	if err != nil {
		return nil, "", false, err
	}
	v, ok, err := ReadGlobal(ctx, db, s.Name)
	return db, v, ok, err
}

func (s GlobalStep) Check(ctx context.Context) (bool, error) {
	_, v, ok, err := s.read(ctx)
	return ok && v == strconv.Itoa(s.Value), err
}

func (s GlobalStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	_, v, ok, err := s.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	d, err := json.Marshal(globalDesired{Database: s.DB.Config.Name, Name: s.Name, Value: strconv.Itoa(s.Value)})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(globalBefore{Present: ok, Value: v})
	return d, b, err
}

func (s GlobalStep) Apply(ctx context.Context, raw json.RawMessage) error {
	var d globalDesired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("%s: desired state: %w", s.ID(), err)
	}
	db, err := s.DB.Get(ctx)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx,
		"INSERT INTO globals (gl_name, gl_index, gl_value) VALUES (?, 0, ?) ON DUPLICATE KEY UPDATE gl_value = VALUES(gl_value)",
		d.Name, d.Value); err != nil {
		return fmt.Errorf("set OpenEMR global %s: %w", d.Name, err)
	}
	return nil
}

// GlobalUndoer puts a global back while it still holds what emrkit wrote: a value changed
// since in OpenEMR's Globals screen is kept and reported.
type GlobalUndoer struct{ DB *mariadb.Shared }

// database returns the database the entry was made in: the run's own, or (when the site
// changed since) that one over the same connection settings; done closes what it opened.
func (u GlobalUndoer) database(ctx context.Context, name string) (db *sql.DB, done func(), err error) {
	if name == u.DB.Config.Name {
		db, err = u.DB.Get(ctx)
		return db, func() {}, err
	}
	other := &mariadb.Shared{Config: u.DB.Config}
	other.Config.Name = name
	db, err = other.Get(ctx)
	return db, func() { other.Close() }, err
}

func (u GlobalUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[globalDesired, globalBefore](e)
	if err != nil {
		return 0, "", err
	}
	db, done, err := u.database(ctx, d.Database)
	var deferred *step.DeferredError
	if errors.As(err, &deferred) {
		return step.Skipped, "database not reachable: " + deferred.Reason, nil
	}
	if err != nil {
		return 0, "", err
	}
	defer done()
	// Compare-and-swap in one statement.
	var res sql.Result
	if b.Present {
		res, err = db.ExecContext(ctx, "UPDATE globals SET gl_value = ? WHERE gl_name = ? AND gl_index = 0 AND gl_value = ?", b.Value, d.Name, d.Value)
	} else {
		res, err = db.ExecContext(ctx, "DELETE FROM globals WHERE gl_name = ? AND gl_index = 0 AND gl_value = ?", d.Name, d.Value)
	}
	if err != nil {
		return 0, "", fmt.Errorf("undo OpenEMR global %s: %w", d.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return step.Restored, "", nil
	}
	cur, ok, err := ReadGlobal(ctx, db, d.Name)
	switch {
	case err != nil:
		return 0, "", err
	case ok == b.Present && (!ok || cur == b.Value):
		return step.AlreadyBefore, "", nil
	case !ok:
		return step.Kept, fmt.Sprintf("global %s was deleted since", d.Name), nil
	}
	return step.Kept, fmt.Sprintf("global %s is %q now (changed in OpenEMR since emrkit set %q)", d.Name, cur, d.Value), nil
}

func (u GlobalUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[globalDesired, globalBefore](e)
	if err != nil {
		return false, err
	}
	db, done, err := u.database(ctx, d.Database)
	if err != nil {
		return false, err
	}
	defer done()
	cur, ok, err := ReadGlobal(ctx, db, d.Name)
	return ok && cur == d.Value, err
}
