// Package portaldb owns the offsite patient portal's own MariaDB account on the OpenEMR
// server: a least-privilege user that may SELECT the portal's tables and also INSERT into
// and UPDATE patient_access_onsite, nothing else. It creates the account as a journaled,
// reversible step: the password is generated into a root-only file and reaches the server
// only as its mysql_native_password hash; the journal keeps the account as it was before
// (if it was there) so undo can put it back exactly, and undo touches nothing when the
// account's privileges were changed since.
package portaldb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/emrkit/emrkit/pkg/secretfile"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// Kind is the journal kind of the portal's database account.
const Kind = "portal.dbuser"

// UserStep makes the account 'User'@'Host' hold exactly the portal's privileges and log in
// with the password in PasswordFile.
type UserStep struct {
	DB           *mariadb.Shared // the OpenEMR database connection (root); a server not there defers
	Database     string          // OpenEMR's database name
	User, Host   string          // portal.db_user, portal.db_host (account 'User'@'Host')
	Tables       []string        // cfg.Portal.TableNames(): SELECT on each; config.PortalWriteTable also gets INSERT, UPDATE
	PasswordFile string          // e.g. /etc/emrkit/portal-db.password (0600 root), generated if missing
	SinceVersion string
}

var (
	_ step.Step        = UserStep{}
	_ step.Preflighter = UserStep{}
)

// desired is what the step makes true. It holds no secret: the password stays in its file.
type desired struct {
	User         string   `json:"user"`
	Host         string   `json:"host"`
	Database     string   `json:"database"`
	Tables       []string `json:"tables"`
	WriteTable   string   `json:"write_table"`
	Privileges   []string `json:"privileges"` // canonical, sorted
	PasswordFile string   `json:"password_file"`
}

// before is the account as emrkit found it. CreateUser and Grants are the server's own
// SHOW CREATE USER and SHOW GRANTS statements (they hold the old account's password hash,
// as the root-only journal may), run again to put the account back.
type before struct {
	Existed             bool     `json:"existed"`
	CreateUser          string   `json:"create_user,omitempty"`
	Grants              []string `json:"grants,omitempty"`
	Privileges          []string `json:"privileges,omitempty"`
	PasswordFileExisted bool     `json:"password_file_existed"`
}

func (s UserStep) Kind() string   { return Kind }
func (s UserStep) Target() string { return s.User + "@" + s.Host }
func (s UserStep) ID() string     { return Kind + ":" + s.Target() }
func (s UserStep) Since() string  { return s.SinceVersion }
func (s UserStep) Describe() string {
	return fmt.Sprintf("portal database account %s@%s: SELECT on %d tables of %s, INSERT/UPDATE on %s",
		s.User, s.Host, len(s.tables()), s.Database, config.PortalWriteTable)
}

// tables is Tables with the write table first and no name twice.
func (s UserStep) tables() []string {
	out := []string{config.PortalWriteTable}
	for _, t := range s.Tables {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// want validates the step's inputs and returns the state it makes true.
func (s UserStep) want() (desired, error) {
	if err := validAccount(s.User, s.Host); err != nil {
		return desired{}, err
	}
	tables := s.tables()
	if err := validTables(s.Database, tables); err != nil {
		return desired{}, err
	}
	if s.PasswordFile == "" || !strings.HasPrefix(s.PasswordFile, "/") {
		return desired{}, fmt.Errorf("portal database password file %q: an absolute path is needed", s.PasswordFile)
	}
	// MariaDB stores host names in lower case, and mysql.global_priv compares them as stored.
	return desired{User: s.User, Host: strings.ToLower(s.Host), Database: s.Database, Tables: tables, WriteTable: config.PortalWriteTable,
		Privileges: desiredPrivileges(s.Database, tables, config.PortalWriteTable), PasswordFile: s.PasswordFile}, nil
}

// validate checks a desired state read back from the journal before any of it reaches SQL.
func (d desired) validate() error {
	if err := validAccount(d.User, d.Host); err != nil {
		return err
	}
	if err := validTables(d.Database, append([]string{d.WriteTable}, d.Tables...)); err != nil {
		return err
	}
	if d.PasswordFile == "" || !strings.HasPrefix(d.PasswordFile, "/") {
		return fmt.Errorf("portal database password file %q: an absolute path is needed", d.PasswordFile)
	}
	if !slices.Equal(d.Privileges, desiredPrivileges(d.Database, d.Tables, d.WriteTable)) {
		return errors.New("journaled privileges do not match the journaled tables")
	}
	return nil
}

// Preflight checks the account name, the password file and that every table is in the
// database, so a typo in portal.tables fails the run before anything changed.
func (s UserStep) Preflight(ctx context.Context) error {
	d, err := s.want()
	if err != nil {
		return err
	}
	if err := secretfile.CheckPath(d.PasswordFile); err != nil {
		return err
	}
	if _, _, err := secretfile.Read(d.PasswordFile); err != nil {
		return err
	}
	db, err := s.DB.Get(ctx)
	if err != nil {
		return err
	}
	ok, err := databaseExists(ctx, db, d.Database)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("database %s does not exist; fix database.name in the emrkit config", d.Database)
	}
	missing, err := tableMissing(ctx, db, d.Database, d.Tables)
	if err != nil {
		return err
	}
	if missing != "" {
		return fmt.Errorf("table %s.%s does not exist; fix portal.tables in the emrkit config", d.Database, missing)
	}
	return nil
}

// Check is true only when the password file is there, the account logs in with exactly
// its password, and the account's privileges are exactly the portal's.
func (s UserStep) Check(ctx context.Context) (bool, error) {
	d, err := s.want()
	if err != nil {
		return false, err
	}
	db, err := s.DB.Get(ctx)
	if err != nil {
		return false, err
	}
	pw, ok, err := secretfile.Read(d.PasswordFile)
	if err != nil || !ok {
		return false, err
	}
	a, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return false, err
	}
	return a.authIs(mariadb.NativePasswordHash(pw)) && slices.Equal(a.privileges, d.Privileges), nil
}

// Capture records the account as it is (its statements, to recreate it) and whether the
// password file is there. The password is not captured: it is in its file.
func (s UserStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	d, err := s.want()
	if err != nil {
		return nil, nil, err
	}
	db, err := s.DB.Get(ctx)
	if err != nil {
		return nil, nil, err
	}
	a, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return nil, nil, err
	}
	b := before{Existed: a.exists, Privileges: a.privileges}
	if a.exists {
		if b.CreateUser, err = showCreateUser(ctx, db, d.User, d.Host); err != nil {
			return nil, nil, err
		}
		if b.Grants, err = showGrants(ctx, db, d.User, d.Host); err != nil {
			return nil, nil, err
		}
	}
	switch _, err := os.Lstat(d.PasswordFile); {
	case err == nil:
		b.PasswordFileExisted = true
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("password file: %w", err)
	}
	dj, err := json.Marshal(d)
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return dj, bj, err
}

// Apply writes the password file if it is missing, creates the account or sets its
// password (from the hash), then replaces its privileges with exactly the portal's. Every
// statement is a plain account statement (no writes to mysql.* tables), so it replicates
// safely, and every part may run again after a crash.
func (s UserStep) Apply(ctx context.Context, raw json.RawMessage) error {
	var d desired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("%s: desired state: %w", s.ID(), err)
	}
	if err := d.validate(); err != nil {
		return fmt.Errorf("%s: desired state: %w", s.ID(), err)
	}
	db, err := s.DB.Get(ctx) // before the file: a server not there changes nothing
	if err != nil {
		return err
	}
	pw, err := secretfile.Ensure(d.PasswordFile)
	if err != nil {
		return err
	}
	hash := mariadb.NativePasswordHash(pw)
	acct := accountSQL(d.User, d.Host)
	exec := func(what, stmt string) error {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s %s: %w", what, acct, err)
		}
		return nil
	}
	if err := exec("create MariaDB account", "CREATE USER IF NOT EXISTS "+acct+" IDENTIFIED BY PASSWORD '"+hash+"'"); err != nil {
		return err
	}
	a, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return err
	}
	if !a.authIs(hash) {
		if err := exec("set the password of", "ALTER USER "+acct+" IDENTIFIED BY PASSWORD '"+hash+"'"); err != nil {
			return err
		}
	}
	if slices.Equal(a.privileges, d.Privileges) {
		return nil
	}
	if !subset(a.privileges, d.Privileges) {
		// Privileges emrkit does not want: take all of them away, then grant the portal's.
		if a.defaultRole != "" {
			if err := exec("clear the default role of", "SET DEFAULT ROLE NONE FOR "+acct); err != nil {
				return err
			}
		}
		for _, p := range a.proxies {
			if err := exec("revoke a proxy grant from", "REVOKE PROXY ON "+quoteString(p.user)+"@"+quoteString(p.host)+" FROM "+acct); err != nil {
				return err
			}
		}
		// Also revokes roles granted to the account.
		if err := exec("revoke the privileges of", "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "+acct); err != nil {
			return err
		}
	}
	qdb, _ := mariadb.QuoteIdentifier(d.Database) // validated above
	for _, t := range d.Tables {
		qt, _ := mariadb.QuoteIdentifier(t)
		if err := exec("grant SELECT on "+d.Database+"."+t+" to", "GRANT SELECT ON "+qdb+"."+qt+" TO "+acct); err != nil {
			return err
		}
	}
	qw, _ := mariadb.QuoteIdentifier(d.WriteTable)
	if err := exec("grant INSERT, UPDATE on "+d.Database+"."+d.WriteTable+" to", "GRANT INSERT, UPDATE ON "+qdb+"."+qw+" TO "+acct); err != nil {
		return err
	}
	after, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return err
	}
	if !slices.Equal(after.privileges, d.Privileges) {
		return fmt.Errorf("MariaDB account %s holds %s after granting, not just the portal's privileges", acct, strings.Join(after.privileges, "; "))
	}
	return nil
}

// subset reports whether every element of a (sorted) is in b (sorted).
func subset(a, b []string) bool {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			return false
		}
	}
	return true
}
