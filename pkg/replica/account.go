package replica

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"

	"github.com/emrkit/emrkit/pkg/secretfile"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// Which server an account lives on.
const (
	serverPrimary      = "primary"
	serverIntermediate = "intermediate"
)

// openIntermediate logs in to the intermediate as root over its socket (unix_socket
// authentication). A server that does not answer defers.
func openIntermediate(ctx context.Context, socket string) (*sql.DB, error) {
	db, err := mariadb.Open(ctx, config.Database{Socket: socket, User: "root"})
	if errors.Is(err, mariadb.ErrUnreachable) {
		return nil, &step.DeferredError{Reason: "the portal replica server is not answering on " + socket +
			" (systemctl start " + ServiceName + ")"}
	}
	if err != nil {
		return nil, fmt.Errorf("portal replica server: %w", err)
	}
	return db, nil
}

// server returns the database an account lives on and a function that releases it.
func server(ctx context.Context, which string, primary *mariadb.Shared, socket string) (*sql.DB, func(), error) {
	switch which {
	case serverPrimary:
		if primary == nil {
			return nil, nil, errors.New("no connection to MariaDB configured")
		}
		db, err := primary.Get(ctx)
		return db, func() {}, err
	case serverIntermediate:
		db, err := openIntermediate(ctx, socket)
		if err != nil {
			return nil, nil, err
		}
		return db, func() { db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown server %q", which)
}

// unlogged runs fn on one connection of db with sql_log_bin=0, so account statements stay
// on this server: the primary's are not replicated to the intermediate, the intermediate's
// not to the offsite host. The connection goes back to the pool with binary logging on, or
// is discarded.
func unlogged(ctx context.Context, db *sql.DB, fn func(*sql.Conn) error) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "SET SESSION sql_log_bin = 1"); rerr != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn }) // never reused unlogged
		}
		conn.Close()
	}()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
		return fmt.Errorf("turn binary logging off for this session: %w", err)
	}
	return fn(conn)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// accountState is an account as the server holds it.
type accountState struct {
	exists bool
	plugin string
	auth   string
	grants []string // SHOW GRANTS, password clause cut, sorted
}

var identifiedBy = regexp.MustCompile(` IDENTIFIED (BY PASSWORD|VIA) .*$`)

func readAccount(ctx context.Context, q queryer, user, host string) (accountState, error) {
	var a accountState
	err := q.QueryRowContext(ctx, "SELECT IFNULL(JSON_VALUE(Priv, '$.plugin'), ''), IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') "+
		"FROM mysql.global_priv WHERE User = ? AND Host = ?", user, host).Scan(&a.plugin, &a.auth)
	if errors.Is(err, sql.ErrNoRows) {
		return a, nil
	}
	if err != nil {
		return a, fmt.Errorf("read MariaDB account %s: %w", accountSQL(user, host), err)
	}
	a.exists = true
	rows, err := q.QueryContext(ctx, "SHOW GRANTS FOR "+accountSQL(user, host))
	if err != nil {
		return a, fmt.Errorf("read the privileges of %s: %w", accountSQL(user, host), err)
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return a, err
		}
		a.grants = append(a.grants, identifiedBy.ReplaceAllString(g, ""))
	}
	slices.Sort(a.grants)
	return a, rows.Err()
}

// accountSQL is 'user'@'host' for names validated by validAccount.
func accountSQL(user, host string) string { return "`" + user + "`@`" + host + "`" }

var userRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

// accountDesired is what an account step makes true. No secret: the password stays in its
// file, and undo compares the account's hash with the one the file's password gives.
type accountDesired struct {
	Server       string   `json:"server"`           // primary or intermediate
	Socket       string   `json:"socket,omitempty"` // the intermediate's
	User         string   `json:"user"`
	Host         string   `json:"host"`
	Grants       []string `json:"grants"` // sorted, as SHOW GRANTS prints them
	PasswordFile string   `json:"password_file"`
}

type accountBefore struct {
	Existed     bool `json:"existed"`
	FileExisted bool `json:"file_existed"`
}

// accountStep makes user@AccountHost on one server log in with the password in its file and
// hold exactly the wanted privileges.
type accountStep struct {
	kind         string
	server       string
	primary      *mariadb.Shared
	socket       string
	user         string
	database     string   // with tables: SELECT on each
	tables       []string //
	passwordFile string
	what, since  string
}

func (s accountStep) Kind() string   { return s.kind }
func (s accountStep) Target() string { return s.user + "@" + AccountHost }
func (s accountStep) ID() string     { return s.kind + ":" + s.Target() }
func (s accountStep) Since() string  { return s.since }
func (s accountStep) Describe() string {
	return s.what + ": " + accountSQL(s.user, AccountHost)
}

func (s accountStep) desired() accountDesired {
	d := accountDesired{Server: s.server, User: s.user, Host: AccountHost, PasswordFile: s.passwordFile}
	if s.server == serverIntermediate {
		d.Socket = s.socket
	}
	acct := accountSQL(s.user, AccountHost)
	d.Grants = []string{"GRANT REPLICATION SLAVE ON *.* TO " + acct}
	for _, t := range s.tables {
		d.Grants = append(d.Grants, "GRANT SELECT ON `"+s.database+"`.`"+t+"` TO "+acct)
	}
	slices.Sort(d.Grants)
	return d
}

func (d accountDesired) validate() error {
	if !userRE.MatchString(d.User) || d.Host != AccountHost {
		return fmt.Errorf("account %q@%q is not one emrkit makes", d.User, d.Host)
	}
	if d.Server != serverPrimary && d.Server != serverIntermediate {
		return fmt.Errorf("unknown server %q", d.Server)
	}
	if !safePath.MatchString(d.PasswordFile) || (d.Server == serverIntermediate && !safePath.MatchString(d.Socket)) {
		return errors.New("bad path in journaled account")
	}
	return nil
}

// Preflight refuses an account of the same name that is not emrkit's: one that does not log
// in with the password in its file.
func (s accountStep) Preflight(ctx context.Context) error {
	pw, ok, err := readPassword(s.passwordFile)
	if err != nil {
		return err
	}
	db, done, err := server(ctx, s.server, s.primary, s.socket)
	if err != nil {
		return err
	}
	defer done()
	a, err := readAccount(ctx, db, s.user, AccountHost)
	if err != nil || !a.exists {
		return err
	}
	if !ok || a.auth != mariadb.NativePasswordHash(pw) {
		return fmt.Errorf("MariaDB account %s exists and was not made by emrkit (it does not log in with the password in %s); drop it or rename it, then run emrkit apply",
			accountSQL(s.user, AccountHost), s.passwordFile)
	}
	return nil
}

func (s accountStep) Check(ctx context.Context) (bool, error) {
	return holdsAccount(ctx, s.desired(), s.primary)
}

func holdsAccount(ctx context.Context, d accountDesired, primary *mariadb.Shared) (bool, error) {
	pw, ok, err := readPassword(d.PasswordFile)
	if err != nil || !ok {
		return false, err
	}
	db, done, err := server(ctx, d.Server, primary, d.Socket)
	if err != nil {
		return false, err
	}
	defer done()
	a, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return false, err
	}
	return a.exists && a.auth == mariadb.NativePasswordHash(pw) && slices.Equal(a.grants, d.Grants), nil
}

func (s accountStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	d := s.desired()
	db, done, err := server(ctx, s.server, s.primary, s.socket)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	a, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return nil, nil, err
	}
	b := accountBefore{Existed: a.exists}
	if _, err := os.Lstat(d.PasswordFile); err == nil {
		b.FileExisted = true
	}
	dj, err := json.Marshal(d)
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return dj, bj, err
}

// Apply writes the password file when missing, creates the account from the password's
// hash and grants exactly the wanted privileges, all unlogged. Every part may run again.
func (s accountStep) Apply(ctx context.Context, _ json.RawMessage) error {
	// The statements come from the step, not from the journal: SQL is never read back
	// from a file. Capture recorded the same state from the same step.
	d := s.desired()
	if err := d.validate(); err != nil {
		return fmt.Errorf("%s: %w", s.ID(), err)
	}
	db, done, err := server(ctx, d.Server, s.primary, d.Socket) // before the file: a server not there changes nothing
	if err != nil {
		return err
	}
	defer done()
	pw, err := ensurePassword(d.PasswordFile)
	if err != nil {
		return err
	}
	hash := mariadb.NativePasswordHash(pw)
	acct := accountSQL(d.User, d.Host)
	return unlogged(ctx, db, func(conn *sql.Conn) error {
		a, err := readAccount(ctx, conn, d.User, d.Host)
		if err != nil {
			return err
		}
		switch {
		case !a.exists:
			if _, err := conn.ExecContext(ctx, "CREATE USER "+acct+" IDENTIFIED BY PASSWORD '"+hash+"'"); err != nil {
				return fmt.Errorf("create MariaDB account %s: %w", acct, err)
			}
		case a.auth != hash:
			return fmt.Errorf("MariaDB account %s exists with another password than the one in %s; drop it, then run emrkit apply", acct, d.PasswordFile)
		}
		if a, err = readAccount(ctx, conn, d.User, d.Host); err != nil {
			return err
		}
		if slices.Equal(a.grants, d.Grants) {
			return nil
		}
		if _, err := conn.ExecContext(ctx, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "+acct); err != nil {
			return fmt.Errorf("revoke the privileges of %s: %w", acct, err)
		}
		for _, g := range d.Grants {
			if _, err := conn.ExecContext(ctx, g); err != nil {
				return fmt.Errorf("%s: %w", g, err)
			}
		}
		return nil
	})
}

// accountUndoer drops an account while it still logs in with the password in emrkit's file,
// then removes the file emrkit created.
type accountUndoer struct{ primary *mariadb.Shared }

func (u accountUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[accountDesired, accountBefore](e)
	if err != nil {
		return 0, "", err
	}
	if err := d.validate(); err != nil {
		return 0, "", fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	acct := accountSQL(d.User, d.Host)
	removePW := func() error {
		if b.FileExisted {
			return nil
		}
		return secretfile.Remove(d.PasswordFile)
	}
	db, done, err := server(ctx, d.Server, u.primary, d.Socket)
	if _, deferred := step.IsDeferred(err); deferred {
		if d.Server == serverIntermediate {
			// Its accounts are in its data directory, which the datadir undo removes.
			if err := removePW(); err != nil {
				return 0, "", err
			}
			return step.Restored, "the portal replica server is not running; the account goes with its data directory", nil
		}
		return step.Skipped, "MariaDB is not reachable: " + err.Error(), nil
	}
	if err != nil {
		return 0, "", err
	}
	defer done()
	pw, ok, err := readPassword(d.PasswordFile)
	if err != nil {
		return 0, "", err
	}
	var outcome step.Outcome
	var detail string
	err = unlogged(ctx, db, func(conn *sql.Conn) error {
		a, err := readAccount(ctx, conn, d.User, d.Host)
		switch {
		case err != nil:
			return err
		case !a.exists:
			outcome = step.AlreadyBefore
			return removePW()
		case b.Existed:
			outcome, detail = step.Kept, acct+" was there before emrkit's step"
			return nil
		case !ok || a.auth != mariadb.NativePasswordHash(pw):
			outcome, detail = step.Kept, acct+"'s password was changed since (or "+d.PasswordFile+" was); drop it yourself if it is unused"
			return nil
		}
		if _, err := conn.ExecContext(ctx, "DROP USER "+acct); err != nil {
			return fmt.Errorf("drop MariaDB account %s: %w", acct, err)
		}
		outcome = step.Restored
		return removePW()
	})
	return outcome, detail, err
}

func (u accountUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[accountDesired, accountBefore](e)
	if err != nil {
		return false, err
	}
	if err := d.validate(); err != nil {
		return false, err
	}
	return holdsAccount(ctx, d, u.primary)
}
