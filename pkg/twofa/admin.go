package twofa

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/totp"
)

// Disable turns user's two-factor login off and returns how many rows changed (0: it was off).
func Disable(ctx context.Context, d *DB, user string) (int64, error) {
	db, err := d.Get(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := readUser(ctx, db, user); err != nil {
		return 0, err
	}
	d.changedUser(user)
	res, err := db.ExecContext(ctx, "UPDATE security SET totp_enabled = 0 WHERE user_name = ? AND totp_enabled <> 0", user)
	if err != nil {
		return 0, fmt.Errorf("disable %s: %w", user, err)
	}
	return res.RowsAffected()
}

// Enrolment is one user's two-factor state as `2fa list` shows it: never the secret.
type Enrolment struct {
	User     string `json:"user"`
	Enabled  bool   `json:"enabled"`
	ByEmrkit bool   `json:"enrolled_by_emrkit"`
}

// List returns users that have a secret or 2FA on. ByEmrkit is true while the secret in the
// database is the one emrkit's journal says it wrote.
func List(ctx context.Context, d *DB, entries []journal.Entry) ([]Enrolment, error) {
	db, err := d.Get(ctx)
	if err != nil {
		return nil, err
	}
	ours := Enrolled(entries, d.Config.Name)
	rows, err := db.QueryContext(ctx,
		"SELECT user_name, totp_enabled, totp_secret FROM security WHERE totp_enabled <> 0 OR totp_secret IS NOT NULL ORDER BY user_name")
	if err != nil {
		return nil, fmt.Errorf("list 2FA users (are OSCAR's 2FA columns there? `emrkit apply` adds them): %w", err)
	}
	defer rows.Close()
	var out []Enrolment
	for rows.Next() {
		var user string
		var enabled int
		var secret sql.NullString
		if err := rows.Scan(&user, intColumn[int]{"security.totp_enabled", &enabled}, &secret); err != nil {
			return nil, scanned(err)
		}
		digest, mine := ours[user]
		out = append(out, Enrolment{User: user, Enabled: enabled != 0, ByEmrkit: mine && secret.Valid && digest == SecretDigest(secret.String)})
	}
	return out, rows.Err()
}

// Enrolled returns, from the journal, the users of database emrkit enrolled and the
// SecretDigest of the secret it wrote for each (the journal keeps no secret once an enrolment
// is done): while a user's secret is still that one, the enrolment is emrkit's and so is the
// PIN, which its undo gives back.
func Enrolled(entries []journal.Entry, database string) map[string]string {
	ours := map[string]string{}
	for _, e := range entries {
		if e.Kind != UserKind || e.State != journal.Done {
			continue
		}
		var u userDesired
		if json.Unmarshal(e.Desired, &u) == nil && u.Database == database {
			ours[u.User] = u.digest()
		}
	}
	return ours
}

// Verifier checks codes and remembers, per user, the last time step accepted, so a code
// cannot be used twice (pquerna/otp has no replay protection of its own).
type Verifier struct {
	DB       *DB
	StateDir string
	Now      func() time.Time
}

const usedStepsFile = "totp-used-steps.json"

// Verify reports whether code is user's current code (±1 step) and not used before.
func (v *Verifier) Verify(ctx context.Context, user, code string) (bool, error) {
	db, err := v.DB.Get(ctx)
	if err != nil {
		return false, err
	}
	st, err := readUser(ctx, db, user)
	if err != nil {
		return false, err
	}
	if st.Enabled != 1 || !st.Secret.Valid {
		return false, fmt.Errorf("%s is not enrolled in two-factor login; `emrkit 2fa enroll %s` enrols them", user, user)
	}
	if err := os.MkdirAll(v.StateDir, 0o700); err != nil {
		return false, err
	}
	lock, err := lockWithin(filepath.Join(v.StateDir, "totp-verify.lock"), 5*time.Second)
	if err != nil {
		return false, err
	}
	defer lock.Close()
	path := filepath.Join(v.StateDir, usedStepsFile)
	used := map[string]int64{}
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &used); err != nil {
			return false, fmt.Errorf("%s is corrupt (%v); remove it to forget which codes were used", path, err)
		}
	}
	step, ok, err := totp.Verify(st.Secret.String, code, v.Now(), used[user])
	if err != nil || !ok {
		return false, err
	}
	used[user] = step
	out, err := json.Marshal(used)
	if err != nil {
		return false, err
	}
	return true, fsutil.WriteAtomic(path, out, 0o600, nil)
}

// lockWithin retries TryLock for up to wait: verifications are short, so waiting beats failing.
func lockWithin(path string, wait time.Duration) (*os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		f, err := fsutil.TryLock(path)
		if !errors.Is(err, fsutil.ErrLocked) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
