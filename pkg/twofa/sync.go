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

// Syncer writes each enabled user's current TOTP code into security.pin, the PIN cycle of
// OSCAR's documented 2FA.sh cron job, without oathtool or a shell.
type Syncer struct {
	DB *sql.DB
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
	rows, err := s.DB.QueryContext(ctx,
		"SELECT security_no, totp_secret FROM security WHERE totp_enabled = 1 AND totp_secret IS NOT NULL AND totp_secret <> ''")
	if err != nil {
		return 0, fmt.Errorf("read enrolled users: %w", err)
	}
	type pin struct {
		id   int64
		code string
	}
	now := s.Now()
	var pins []pin
	var bad int
	for rows.Next() {
		var p pin
		var secret string
		if err := rows.Scan(&p.id, &secret); err != nil {
			rows.Close()
			return 0, err
		}
		code, err := totp.Code(secret, now)
		if err != nil {
			bad++ // a malformed secret (typed in by hand) must not stop everyone else's PIN
			continue
		}
		p.code = code
		pins = append(pins, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for start := 0; start < len(pins); start += pinBatch {
		batch := pins[start:min(start+pinBatch, len(pins))]
		var q strings.Builder
		args := make([]any, 0, 3*len(batch))
		q.WriteString("UPDATE security SET pin = CASE security_no")
		for _, p := range batch {
			q.WriteString(" WHEN ? THEN ?")
			args = append(args, p.id, p.code)
		}
		q.WriteString(" END WHERE security_no IN (?" + strings.Repeat(",?", len(batch)-1) + ")")
		for _, p := range batch {
			args = append(args, p.id)
		}
		if _, err := s.DB.ExecContext(ctx, q.String(), args...); err != nil {
			return start, fmt.Errorf("write PINs: %w", err)
		}
	}
	if bad > 0 {
		return len(pins), fmt.Errorf("%d enrolled users have a malformed totp_secret; re-enrol them with `emrkit 2fa enroll USER --force`", bad)
	}
	return len(pins), nil
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
