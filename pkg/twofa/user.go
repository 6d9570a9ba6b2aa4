package twofa

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/totp"
)

// UserKind is the journal kind of a user's enrolment.
const UserKind = "twofa.user"

// userState is a user's 2FA columns and PIN. The journal (0600, root) holds it so that undo
// can put back exactly what was there — the PIN too, since the PIN cycle overwrites it with
// codes and the user needs their own PIN back when 2FA is undone.
type userState struct {
	Enabled int            `json:"enabled"`
	Secret  sql.NullString `json:"secret"`
	Pin     sql.NullString `json:"pin"`
}

type userDesired struct {
	Database string `json:"database"`
	User     string `json:"user"`
	// Secret is what Apply writes, journaled before it so that a run resumed after a crash
	// writes the same one. Once the enrolment is no longer pending, Seal replaces it with
	// SecretSHA256: undo and sync-pins only compare the column with what emrkit wrote, and
	// the secret itself belongs in the user's app (and the URI file until it is handed over).
	Secret       string `json:"secret,omitempty"`
	SecretSHA256 string `json:"secret_sha256,omitempty"`
}

// SecretDigest is the hex SHA-256 of a secret as the column holds it, which the journal keeps
// in its place. Secrets are random (at least 128 bits), so the digest needs no salt.
func SecretDigest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// digest is the SHA-256 of the secret emrkit wrote, whether the entry is sealed or not (a
// pending one, or one an emrkit before 0.7 journaled).
func (d userDesired) digest() string {
	if d.SecretSHA256 != "" {
		return d.SecretSHA256
	}
	return SecretDigest(d.Secret)
}

// UserStep enrols User: a valid secret and totp_enabled=1. A user who already has a valid
// secret keeps it (only the flag is set) unless Force issues a new one.
type UserStep struct {
	DB           *DB
	User         string
	Force        bool
	URIs         *URIFile
	Issuer       string
	SinceVersion string
}

func (s UserStep) Kind() string   { return UserKind }
func (s UserStep) Target() string { return s.DB.Config.Name + ".security#" + s.User }
func (s UserStep) ID() string     { return UserKind + ":" + s.Target() }
func (s UserStep) Since() string  { return s.SinceVersion }
func (s UserStep) Describe() string {
	return fmt.Sprintf("enrol OSCAR user %s in two-factor login", s.User)
}

// erBadField is MariaDB's "unknown column" error.
const erBadField = 1054

// ErrNoUser means the user is not in OSCAR's security table.
var ErrNoUser = errors.New("no such OSCAR user")

func noUser(user string) error {
	return fmt.Errorf("%w %q in security; fix totp.users or create the user in OSCAR first", ErrNoUser, user)
}

func noColumns(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == erBadField {
		return errors.New("OSCAR's 2FA columns are not in the security table yet; run `emrkit apply` first")
	}
	return nil
}

// scanTargets are the Scan destinations of st's columns, in the order readUser selects them.
func (st *userState) scanTargets() []any {
	return []any{intColumn[int]{"security.totp_enabled", &st.Enabled}, &st.Secret, &st.Pin}
}

func readUser(ctx context.Context, db *sql.DB, user string) (userState, error) {
	var st userState
	err := scanned(db.QueryRowContext(ctx,
		"SELECT totp_enabled, totp_secret, pin FROM security WHERE user_name = ?", user).Scan(st.scanTargets()...))
	if errors.Is(err, sql.ErrNoRows) {
		return st, noUser(user)
	}
	if e := noColumns(err); e != nil {
		return st, e
	}
	if err != nil {
		return st, fmt.Errorf("read 2FA state of %s: %w", user, err)
	}
	return st, nil
}

// readUsers returns every user's 2FA state, by lower-cased name.
func readUsers(ctx context.Context, db *sql.DB) (map[string]userState, error) {
	rows, err := db.QueryContext(ctx, "SELECT user_name, totp_enabled, totp_secret, pin FROM security")
	if e := noColumns(err); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, fmt.Errorf("read 2FA state of OSCAR users: %w", err)
	}
	defer rows.Close()
	users := map[string]userState{}
	for rows.Next() {
		var name string
		var st userState
		if err := rows.Scan(append([]any{&name}, st.scanTargets()...)...); err != nil {
			return nil, scanned(err)
		}
		users[strings.ToLower(name)] = st
	}
	return users, rows.Err()
}

func (st userState) enrolled() bool {
	return st.Enabled == 1 && st.Secret.Valid && totp.ValidSecret(st.Secret.String) == nil
}

func (s UserStep) read(ctx context.Context) (*sql.DB, userState, error) {
	if !config.ValidUserName(s.User) {
		return nil, userState{}, fmt.Errorf("user name %q: use letters, digits, . _ @ - (at most 30)", s.User)
	}
	db, err := s.DB.Get(ctx)
	if err != nil {
		return nil, userState{}, err
	}
	st, err := readUser(ctx, db, s.User)
	return db, st, err
}

// Preflight checks the user exists and the columns an enrolment writes can hold it; the 2FA
// columns may not be there yet.
func (s UserStep) Preflight(ctx context.Context) error {
	if !config.ValidUserName(s.User) {
		return fmt.Errorf("user name %q: use letters, digits, . _ @ - (at most 30)", s.User)
	}
	ok, err := s.DB.userExists(ctx, s.User)
	if err != nil {
		return err
	}
	if !ok {
		return noUser(s.User)
	}
	have, err := s.DB.tableColumns(ctx, "security")
	if err != nil {
		return err
	}
	if err := wrongType("security", have, columns, fixOrDrop); err != nil {
		return err
	}
	return wrongType("security", have, []column{pinColumn}, fixColumn)
}

func (s UserStep) Check(ctx context.Context) (bool, error) {
	if !config.ValidUserName(s.User) {
		return false, fmt.Errorf("user name %q: use letters, digits, . _ @ - (at most 30)", s.User)
	}
	st, err := s.DB.checkedUser(ctx, s.User)
	if err != nil {
		return false, err
	}
	return !s.Force && st.enrolled(), nil
}

// Capture picks the secret (kept, or new from crypto/rand) before anything is written, so a
// run resumed after a crash writes the same one.
func (s UserStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	_, st, err := s.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	secret := st.Secret.String
	if s.Force || !st.Secret.Valid || totp.ValidSecret(secret) != nil {
		if secret, err = totp.NewSecret(rand.Reader); err != nil {
			return nil, nil, err
		}
	}
	d, err := json.Marshal(userDesired{Database: s.DB.Config.Name, User: s.User, Secret: secret})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(st)
	return d, b, err
}

func (s UserStep) Apply(ctx context.Context, desired json.RawMessage) error {
	var d userDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return err
	}
	if d.Secret == "" {
		// Only a done entry is sealed, and Apply runs pending ones: never enable 2FA without a secret.
		return fmt.Errorf("journal entry %s holds no secret to write; `emrkit 2fa enroll %s --force` issues a new one", s.ID(), s.User)
	}
	db, _, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.DB.changedUser(s.User)
	if _, err := db.ExecContext(ctx,
		"UPDATE security SET totp_secret = ?, totp_enabled = 1 WHERE user_name = ?", d.Secret, s.User); err != nil {
		return fmt.Errorf("enrol %s: %w", s.User, err)
	}
	return s.URIs.Put(s.User, totp.URI(s.Issuer, s.User, d.Secret))
}

// UserUndoer puts a user's previous 2FA state back while the secret is still emrkit's.
type UserUndoer struct {
	DB   *DB
	URIs *URIFile
}

// Seal keeps, of a done enrolment, the SHA-256 of the secret instead of the secret (see
// userDesired); a sealed entry comes back unchanged.
func (UserUndoer) Seal(desired json.RawMessage) (json.RawMessage, error) {
	var d userDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return nil, err
	}
	if d.Secret == "" {
		return desired, nil
	}
	d.SecretSHA256, d.Secret = d.digest(), ""
	return json.Marshal(d)
}

// Unseal gives a sealed enrolment its secret back from the security table, while the column
// still holds the secret the digest names (see step.Sealer).
func (u UserUndoer) Unseal(ctx context.Context, e journal.Entry) (json.RawMessage, bool, error) {
	d, _, err := decodeUser(e)
	if err != nil {
		return nil, false, err
	}
	db, err := u.DB.Get(ctx)
	if err != nil {
		return nil, false, err
	}
	cur, err := readUser(ctx, db, d.User)
	if err != nil {
		return nil, false, err
	}
	if !cur.Secret.Valid || SecretDigest(cur.Secret.String) != d.digest() {
		return nil, false, nil
	}
	d.Secret, d.SecretSHA256 = cur.Secret.String, ""
	out, err := json.Marshal(d)
	return out, err == nil, err
}

func decodeUser(e journal.Entry) (userDesired, userState, error) {
	return journal.Decode[userDesired, userState](e)
}

func (u UserUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := decodeUser(e)
	if err != nil {
		return 0, "", err
	}
	db, err := u.DB.Get(ctx)
	var deferred *step.DeferredError
	if errors.As(err, &deferred) {
		return step.Skipped, "database not reachable: " + deferred.Reason, nil
	}
	if err != nil {
		return 0, "", err
	}
	if err := u.URIs.Remove(d.User); err != nil {
		return 0, "", err
	}
	// Compare-and-swap in one statement: only a row still holding emrkit's secret changes.
	u.DB.changedUser(d.User)
	res, err := db.ExecContext(ctx,
		"UPDATE security SET totp_secret = ?, totp_enabled = ?, pin = ? WHERE user_name = ? AND SHA2(totp_secret, 256) = ? AND totp_enabled = 1",
		b.Secret, b.Enabled, b.Pin, d.User, d.digest())
	if err != nil {
		return 0, "", fmt.Errorf("undo enrolment of %s: %w", d.User, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return step.Restored, "", nil
	}
	cur, err := readUser(ctx, db, d.User)
	switch {
	case errors.Is(err, ErrNoUser):
		return step.Skipped, "user " + d.User + " no longer exists", nil
	case err != nil:
		return 0, "", err
	case cur.Enabled == b.Enabled && cur.Secret == b.Secret:
		return step.AlreadyBefore, "", nil
	}
	return step.Kept, fmt.Sprintf("%s's 2FA was changed since emrkit enrolled them", d.User), nil
}

func (u UserUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	d, _, err := decodeUser(e)
	if err != nil {
		return false, err
	}
	db, err := u.DB.Get(ctx)
	if err != nil {
		return false, err
	}
	cur, err := readUser(ctx, db, d.User)
	if err != nil {
		return false, err
	}
	return cur.Enabled == 1 && cur.Secret.Valid && SecretDigest(cur.Secret.String) == d.digest(), nil
}
