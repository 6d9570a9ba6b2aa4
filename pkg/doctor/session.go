package doctor

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/openemr"
)

const (
	versionOfOpenEMR = "the installed OpenEMR version and patch level"
	mfaTitle         = "every active OpenEMR user has MFA registered"
	idleTitle        = "OpenEMR logs an idle session off within 15 minutes"
	auditTitle       = "OpenEMR's audit log is on"
	ipLockTitle      = "OpenEMR locks out an address after 20 failed logins or fewer"
	apiTitle         = "OpenEMR's REST and FHIR APIs are off, or served over HTTPS"

	// idleLimit is the automatic logoff doctor expects (OpenEMR's default is 7200 s).
	idleLimit = 900
	// ipLockLimit is the failed logins from one address doctor accepts (OpenEMR's: 100).
	ipLockLimit = 20
)

// openemrPolicy reports what OpenEMR itself enforces and emrkit does not change: the version,
// MFA per user (OpenEMR has no global that requires it), the idle logoff, the audit log, the
// per-address lockout, and the APIs over plain HTTP. A global the version does not define is
// said to be missing, never read as a value.
func (h *host) openemrPolicy(in openemr.Install) []Check {
	v := in.Version.String()
	out := []Check{{ID: "openemr.version", Title: versionOfOpenEMR, Status: Pass, Safeguard: hipaaRisk,
		Finding: fmt.Sprintf("OpenEMR %s (patch %s, database %d) in %s", v, orNone(in.Version.RealPatch), in.Version.Database, in.Root)}}
	defined, derr := in.Globals()
	ids := []struct{ id, title, safeguard string }{
		{"openemr.mfa", mfaTitle, hipaaAuth}, {"openemr.idle-logoff", idleTitle, hipaaLogoff}, {"openemr.audit-log", auditTitle, hipaaAudit},
		{"openemr.ip-lockout", ipLockTitle, hipaaPasswords}, {"openemr.api-https", apiTitle, hipaaTransmit},
	}
	if h.dbErr != nil || derr != nil {
		err := derr
		if h.dbErr != nil {
			err = fmt.Errorf("the EMR's database cannot be read: %v", h.dbErr)
		}
		for _, c := range ids {
			out = append(out, skipped(c.id, c.title, c.safeguard, err))
		}
		return out
	}
	g := func(name string) (string, bool, error) {
		if _, ok := defined[name]; !ok {
			return "", false, nil
		}
		val, _, err := openemr.ReadGlobal(h.ctx, h.db, name)
		return strings.TrimSpace(val), true, err
	}
	out = append(out, h.mfa(h.db, v))

	const globalsFix = "OpenEMR: Admin > Config > "
	within := func(limit int) func(string) bool {
		return func(v string) bool { n, err := strconv.Atoi(v); return err == nil && n > 0 && n <= limit }
	}
	for _, r := range []struct {
		id, title, safeguard, name string
		holds                      func(string) bool
		lax, missing, fix          string
		off                        Status // what a value that does not hold is
	}{
		{"openemr.idle-logoff", idleTitle, hipaaLogoff, "timeout", within(idleLimit), "s: an unattended screen stays logged in",
			"defines no idle logoff (timeout)", "Security > Idle Session Timeout Seconds: 900", Warn},
		{"openemr.audit-log", auditTitle, hipaaAudit, "enable_auditlog", func(v string) bool { return v == "1" },
			": OpenEMR records no one's access to patient records", "defines no enable_auditlog", "Logging > Enable Audit Logging", Fail},
		{"openemr.ip-lockout", ipLockTitle, hipaaPasswords, "ip_max_failed_logins", within(ipLockLimit),
			"(0: no limit): one address may guess that many times", "cannot lock out an address (ip_max_failed_logins came in 7.0.2)",
			"Security > Max Failed Logins Per IP: 20", Warn},
	} {
		val, ok, err := g(r.name)
		switch {
		case err != nil:
			out = append(out, skipped(r.id, r.title, r.safeguard, err))
		case !ok:
			out = append(out, Check{ID: r.id, Title: r.title, Status: Warn, Safeguard: r.safeguard, Finding: "OpenEMR " + v + " " + r.missing, Fix: "upgrade OpenEMR"})
		case r.holds(val):
			out = append(out, check(r.id, r.title, r.safeguard, true, fmt.Sprintf("%s is %s", r.name, val), "", ""))
		default:
			// OpenEMR's own lax defaults are warnings; an audit log turned off fails.
			out = append(out, Check{ID: r.id, Title: r.title, Status: r.off, Safeguard: r.safeguard,
				Finding: fmt.Sprintf("%s is %q %s", r.name, val, r.lax), Fix: globalsFix + r.fix})
		}
	}

	var on []string
	for _, name := range []string{"rest_api", "rest_fhir_api", "rest_portal_api"} {
		val, ok, err := g(name)
		if err != nil {
			return append(out, skipped("openemr.api-https", apiTitle, hipaaTransmit, err))
		}
		if ok && val == "1" {
			on = append(on, name)
		}
	}
	https := strings.HasPrefix(h.env.OpenEMRURL, "https://") || h.env.Config.OpenEMR.HTTPSRedirect
	switch {
	case len(on) == 0:
		out = append(out, check("openemr.api-https", apiTitle, hipaaTransmit, true, "the REST, FHIR and portal APIs are off", "", ""))
	default:
		out = append(out, check("openemr.api-https", apiTitle, hipaaTransmit, https, strings.Join(on, ", ")+" on, over HTTPS",
			strings.Join(on, ", ")+" on while OpenEMR is served over plain HTTP: tokens and patient data cross the network in clear",
			"enable an SSL site, then openemr.https_redirect: true (or turn the APIs off: Admin > Config > Connectors)"))
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// mfa lists active users with a password but no MFA registration. OpenEMR cannot require MFA
// (its tracker has a proposed force_mfa), so this is a warning, with names on --verbose.
func (h *host) mfa(db *sql.DB, version string) Check {
	const id = "openemr.mfa"
	var n int
	if err := db.QueryRowContext(h.ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'login_mfa_registrations'").Scan(&n); err != nil {
		return skipped(id, mfaTitle, hipaaAuth, err)
	}
	if n == 0 {
		return Check{ID: id, Title: mfaTitle, Status: Warn, Safeguard: hipaaAuth,
			Finding: "OpenEMR " + version + " has no MFA (no login_mfa_registrations table)", Fix: "upgrade OpenEMR (MFA came in 5.0.2)"}
	}
	users, total, err := usersWithoutMFA(h.ctx, db)
	if err != nil {
		return skipped(id, mfaTitle, hipaaAuth, err)
	}
	if len(users) == 0 {
		return check(id, mfaTitle, hipaaAuth, true, fmt.Sprintf("%d active users, all with MFA", total), "", "")
	}
	finding := fmt.Sprintf("%d of %d active users log in with a password alone (OpenEMR cannot require MFA)", len(users), total)
	if h.env.Verbose {
		finding += ": " + strings.Join(users, ", ")
	} else {
		finding += "; --verbose names them"
	}
	return Check{ID: id, Title: mfaTitle, Status: Warn, Safeguard: hipaaAuth, Finding: finding,
		Fix: "each user: OpenEMR user menu > MFA Management (TOTP or U2F)"}
}

func usersWithoutMFA(ctx context.Context, db *sql.DB) (missing []string, total int, err error) {
	rows, err := db.QueryContext(ctx, "SELECT u.username, EXISTS (SELECT 1 FROM login_mfa_registrations m WHERE m.user_id = u.id) "+
		"FROM users u JOIN users_secure s ON s.id = u.id WHERE u.active = 1 AND u.username <> '' ORDER BY u.username")
	if err != nil {
		return nil, 0, fmt.Errorf("read OpenEMR's users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var registered bool
		if err := rows.Scan(&name, &registered); err != nil {
			return nil, 0, err
		}
		total++
		if !registered {
			missing = append(missing, name)
		}
	}
	return missing, total, rows.Err()
}
