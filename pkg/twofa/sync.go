package twofa

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/totp"
)

// pinBatch bounds one UPDATE: short statements keep row locks brief while OSCAR logs users in.
const pinBatch = 500

// Syncer writes the current TOTP code into security.pin, the PIN cycle of OSCAR's documented
// 2FA.sh cron job, without oathtool or a shell, for the users emrkit enrolled and only them.
// A user whose 2FA was switched on elsewhere (OSCAR 19.5+'s own screens, which check the code
// themselves) keeps the PIN an admin gave them: emrkit never gives back a PIN it did not
// journal, and it journals only its own enrolments, whose undo restores the PIN.
type Syncer struct {
	DB *sql.DB
	// Enrolled is each user emrkit enrolled with the digest of the secret it wrote
	// (twofa.Enrolled). A user is cycled only while the database still holds that secret: one
	// changed since in OSCAR's UI, or given back by an undo, is no longer emrkit's.
	Enrolled map[string]string
	// Properties is oscar.properties: TOTP=0 (or absent) there means 2FA is off, and the
	// PINs are left alone.
	Properties string
	Now        func() time.Time
}

// Enabled reports whether OSCAR's global TOTP switch is on.
func (s *Syncer) Enabled() (bool, error) {
	f, err := props.Load(s.Properties)
	if err != nil {
		return false, err
	}
	v, _ := f.Doc.Get("TOTP")
	return v == "1", nil
}

// Once writes the codes of the current time step and returns how many users it updated.
func (s *Syncer) Once(ctx context.Context) (int, error) {
	if len(s.Enrolled) == 0 {
		return 0, nil
	}
	rows, err := s.DB.QueryContext(ctx,
		"SELECT security_no, user_name, totp_secret FROM security WHERE totp_enabled = 1 AND totp_secret IS NOT NULL AND totp_secret <> ''")
	if err != nil {
		return 0, fmt.Errorf("read enrolled users: %w", err)
	}
	type pin struct {
		id           int64
		secret, code string
	}
	now := s.Now()
	var pins []pin
	var bad int
	for rows.Next() {
		var p pin
		var user string
		if err := rows.Scan(intColumn[int64]{"security.security_no", &p.id}, &user, &p.secret); err != nil {
			rows.Close()
			return 0, scanned(err)
		}
		if mine, ok := s.Enrolled[user]; !ok || mine != SecretDigest(p.secret) {
			continue
		}
		code, err := totp.Code(p.secret, now)
		if err != nil {
			bad++ // a malformed secret must not stop everyone else's PIN
			continue
		}
		p.code = code
		pins = append(pins, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	written := 0
	for start := 0; start < len(pins); start += pinBatch {
		batch := pins[start:min(start+pinBatch, len(pins))]
		// Compare-and-swap: an undo that gave a user's secret and PIN back between the read
		// and this write must win.
		var set, cas strings.Builder
		args := make([]any, 0, 5*len(batch))
		for _, p := range batch {
			set.WriteString(" WHEN ? THEN ?")
			args = append(args, p.id, p.code)
		}
		for _, p := range batch {
			cas.WriteString(" WHEN ? THEN ?")
			args = append(args, p.id, p.secret)
		}
		for _, p := range batch {
			args = append(args, p.id)
		}
		q := "UPDATE security SET pin = CASE security_no" + set.String() + " END" +
			" WHERE totp_enabled = 1 AND totp_secret = CASE security_no" + cas.String() + " END" +
			" AND security_no IN (?" + strings.Repeat(",?", len(batch)-1) + ")"
		if _, err := s.DB.ExecContext(ctx, q, args...); err != nil {
			return written, fmt.Errorf("write PINs: %w", err)
		}
		written += len(batch)
	}
	if bad > 0 {
		return written, fmt.Errorf("%d users emrkit enrolled have a malformed totp_secret; re-enrol them with `emrkit 2fa enroll USER --force`", bad)
	}
	return written, nil
}

// Run calls Once now and again at every 30-second boundary before window ends, so a cron job
// started each minute keeps every PIN current instead of lagging a step behind.
func (s *Syncer) Run(ctx context.Context, window time.Duration) (int, error) {
	on, err := s.Enabled()
	if err != nil || !on {
		return 0, err
	}
	end := s.Now().Add(window)
	total := 0
	for {
		n, err := s.Once(ctx)
		total += n
		if err != nil {
			return total, err
		}
		now := s.Now()
		next := now.Truncate(totp.Period).Add(totp.Period)
		if !next.Before(end) {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(next.Sub(now)):
		}
	}
}
