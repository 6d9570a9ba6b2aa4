package portaldb

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/emrkit/emrkit/pkg/secretfile"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// Undoers returns the undoer of the portal account's entries.
func Undoers(db *mariadb.Shared) step.Registry {
	return step.Registry{Kind: undoer{db: db}}
}

// undoer drops the portal account, or puts back the account emrkit found, while the account
// still holds exactly what emrkit gave it (compare-and-swap).
type undoer struct{ db *mariadb.Shared }

func decode(e journal.Entry) (desired, before, error) {
	d, b, err := journal.Decode[desired, before](e)
	if err != nil {
		return d, b, err
	}
	d.Host = strings.ToLower(d.Host)
	if err := d.validate(); err != nil {
		return d, b, fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	return d, b, nil
}

// state is the account now, next to what the entry says emrkit wrote.
type state struct {
	account
	// passwordKnown: the password file could be read; then fileHash is its password's hash.
	passwordKnown bool
	fileHash      string
}

func read(ctx context.Context, db *sql.DB, d desired) (state, error) {
	a, err := readAccount(ctx, db, d.User, d.Host)
	if err != nil {
		return state{}, err
	}
	st := state{account: a}
	// An unreadable file (removed, or its mode changed) leaves the privileges to decide.
	if pw, ok, err := secretfile.Read(d.PasswordFile); err == nil && ok {
		st.passwordKnown, st.fileHash = true, mariadb.NativePasswordHash(pw)
	}
	return st, nil
}

// emrkits reports whether the account still holds what emrkit wrote: exactly the portal's
// privileges and (when the password file can tell) the file's password.
func (st state) emrkits(d desired) bool {
	return st.exists && slices.Equal(st.privileges, d.Privileges) && (!st.passwordKnown || st.authIs(st.fileHash))
}

func (u undoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	d, _, err := decode(e)
	if err != nil {
		return false, err
	}
	db, err := u.db.Get(ctx)
	if err != nil {
		return false, err
	}
	st, err := read(ctx, db, d)
	if err != nil {
		return false, err
	}
	return st.emrkits(d), nil
}

func (u undoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := decode(e)
	if err != nil {
		return 0, "", err
	}
	db, err := u.db.Get(ctx)
	if deferred, ok := step.IsDeferred(err); ok {
		return step.Skipped, "database not reachable: " + deferred.Reason, nil
	}
	if err != nil {
		return 0, "", err
	}
	st, err := read(ctx, db, d)
	if err != nil {
		return 0, "", err
	}
	acct := accountSQL(d.User, d.Host)
	// The file is emrkit's only if emrkit wrote it; it goes once its account is gone or back.
	dropFile := func() error {
		if b.PasswordFileExisted {
			return nil
		}
		return secretfile.Remove(d.PasswordFile)
	}
	if !st.exists {
		if err := dropFile(); err != nil {
			return 0, "", err
		}
		if b.Existed {
			return step.Skipped, fmt.Sprintf("account %s was dropped since emrkit changed it; the account it replaced was not recreated", acct), nil
		}
		return step.AlreadyBefore, "", nil
	}
	var current string // SHOW CREATE USER now, to compare with the journaled one
	if b.Existed {
		if current, err = showCreateUser(ctx, db, d.User, d.Host); err != nil {
			return 0, "", err
		}
	}
	asBefore := b.Existed && current == b.CreateUser
	switch {
	case st.emrkits(d):
	case asBefore && slices.Equal(st.privileges, b.Privileges):
		// The change never landed (or was reverted by hand).
		if err := dropFile(); err != nil {
			return 0, "", err
		}
		return step.AlreadyBefore, "", nil
	case asBefore && subset(st.privileges, b.Privileges):
		// An undo interrupted after recreating the old account, before all its grants.
	case e.State == journal.Pending && subset(st.privileges, union(d.Privileges, b.Privileges)) &&
		(asBefore || (st.passwordKnown && st.authIs(st.fileHash))):
		// An apply interrupted between its statements: nothing here is anyone else's.
	default:
		return step.Kept, u.changed(d, b, st), nil
	}
	if b.Existed {
		if err := restore(ctx, db, d, b); err != nil {
			return 0, "", err
		}
	} else if _, err := db.ExecContext(ctx, "DROP USER IF EXISTS "+acct); err != nil {
		return 0, "", fmt.Errorf("drop MariaDB account %s: %w", acct, err)
	}
	if err := dropFile(); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

// changed says how the account differs from what emrkit wrote, for a Kept outcome.
func (u undoer) changed(d desired, b before, st state) string {
	var diff []string
	for _, p := range st.privileges {
		if _, ok := slices.BinarySearch(d.Privileges, p); !ok {
			diff = append(diff, "+"+p)
		}
	}
	for _, p := range d.Privileges {
		if _, ok := slices.BinarySearch(st.privileges, p); !ok {
			diff = append(diff, "-"+p)
		}
	}
	what := "its privileges changed (" + strings.Join(diff, ", ") + ")"
	if len(diff) == 0 {
		what = "its password changed"
	}
	acct := accountSQL(d.User, d.Host)
	if b.Existed {
		return fmt.Sprintf("account %s was changed since emrkit set it up: %s; left as it is, the account it replaced was not put back", acct, what)
	}
	return fmt.Sprintf("account %s was changed since emrkit created it: %s; left as it is (DROP USER %s when the portal no longer needs it)", acct, what, acct)
}

// restore puts the account emrkit found back: CREATE OR REPLACE USER from its SHOW CREATE
// USER (which also drops emrkit's privileges, in one statement), then its SHOW GRANTS.
func restore(ctx context.Context, db *sql.DB, d desired, b before) error {
	acct := accountSQL(d.User, d.Host)
	shown := accountShown(d.User, d.Host)
	// The statements come from the root-only journal; still, run only what names this
	// account and is one of the forms the server printed.
	create, ok := strings.CutPrefix(b.CreateUser, "CREATE USER "+shown)
	if !ok {
		return fmt.Errorf("restore MariaDB account %s: the journaled statement is not its CREATE USER", acct)
	}
	for _, g := range b.Grants {
		if !(strings.HasPrefix(g, "GRANT ") && strings.Contains(g, " TO "+shown) ||
			strings.HasPrefix(g, "SET DEFAULT ROLE ") && strings.HasSuffix(g, " FOR "+shown)) {
			return fmt.Errorf("restore MariaDB account %s: a journaled grant is not one of its own: %s", acct, hideSecrets(g))
		}
	}
	if _, err := db.ExecContext(ctx, "CREATE OR REPLACE USER "+shown+create); err != nil {
		return fmt.Errorf("restore MariaDB account %s: %w", acct, err)
	}
	for _, g := range b.Grants {
		if _, err := db.ExecContext(ctx, g); err != nil {
			return fmt.Errorf("restore the grants of MariaDB account %s (%s): %w", acct, hideSecrets(g), err)
		}
	}
	return nil
}

func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
