package doctor

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/emrkit/emrkit/pkg/cron"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/openemr"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/totp"
	"github.com/emrkit/emrkit/pkg/twofa"
)

// oscar checks OSCAR's 2FA, the PIN cycle and encrypted exports.
func (h *host) oscar() []Check {
	cfg := h.env.Config
	path, found := plan.PropertiesPath(cfg, h.env.Host)
	var doc *props.File
	var perr error
	if !found {
		perr = errors.New("OSCAR is not installed here (no oscar.properties)")
	} else {
		doc, perr = props.Load(path)
	}
	get := func(k string) string {
		v, _ := doc.Doc.Get(k)
		return strings.TrimSpace(v)
	}
	var out []Check

	const totpTitle = "two-factor login is on (TOTP=1)"
	if perr != nil {
		out = append(out, skipped("oscar.totp", totpTitle, hipaaAuth, perr))
	} else {
		out = append(out, check("oscar.totp", totpTitle, hipaaAuth, get("TOTP") == "1",
			"TOTP=1 in "+path, "TOTP is "+strconv.Quote(get("TOTP"))+" in "+path+": OSCAR asks no second factor", "emrkit apply"))
	}

	out = append(out, h.dbCheck("oscar.enrolled", "every active OSCAR provider is enrolled in 2FA", hipaaAuth, h.enrolment))

	cronPath := cfg.Paths.CronFile
	job, err := fsutil.ReadFile(cronPath, fsutil.TextLimit)
	switch {
	case err == nil:
		out = append(out, check("oscar.pin-job", "the PIN cycle's cron job is in place", hipaaAuth,
			string(job) == string(cron.PINJob(h.env.Host.ConfigPath)), cronPath+" holds emrkit's job",
			cronPath+" was changed since emrkit wrote it", "emrkit apply"))
	case errors.Is(err, fs.ErrNotExist):
		out = append(out, check("oscar.pin-job", "the PIN cycle's cron job is in place", hipaaAuth, false, "",
			cronPath+" is missing: PINs stop following the codes", "emrkit apply"))
	default:
		out = append(out, skipped("oscar.pin-job", "the PIN cycle's cron job is in place", hipaaAuth, err))
	}

	if perr == nil && get("TOTP") == "1" {
		out = append(out, h.dbCheck("oscar.pins-fresh", "PINs hold the current codes (the cycle runs)", hipaaAuth, h.pinsFresh))
	}

	const pgpTitle = "patient exports are encrypted (PGP, encryptedOnly)"
	switch {
	case cfg.PGP.Mode == "none":
		out = append(out, Check{ID: "oscar.pgp", Title: pgpTitle, Status: Warn, Safeguard: hipaaEncryption,
			Finding: "pgp.mode is none: emrkit leaves OSCAR's export encryption alone", Fix: "dpkg-reconfigure emrkit (emrkit/pgp-mode)"})
	case perr != nil:
		out = append(out, skipped("oscar.pgp", pgpTitle, hipaaEncryption, perr))
	case get(pgp.PropEncryptedOnly) != "true" || get(pgp.PropBin) == "" || get(pgp.PropKey) == "":
		out = append(out, check("oscar.pgp", pgpTitle, hipaaEncryption, false, "",
			"PGP_BIN/PGP_KEY or demographic.export.encryptedOnly=true missing in "+path+": exports may leave unencrypted", "emrkit apply"))
	default:
		env := h.env.Host.PGP
		env.Properties = path
		res, err := pgp.Selftest(h.ctx, cfg, env, os.TempDir())
		switch {
		case errors.Is(err, fs.ErrPermission) || os.Geteuid() != 0 && err != nil:
			out = append(out, skipped("oscar.pgp", pgpTitle, hipaaEncryption, fmt.Errorf("the export self-test runs as Tomcat's user: %v", err)))
		case err != nil:
			out = append(out, check("oscar.pgp", pgpTitle, hipaaEncryption, false, "", "OSCAR's export call fails: "+err.Error(), "emrkit pgp selftest; emrkit apply"))
		default:
			out = append(out, check("oscar.pgp", pgpTitle, hipaaEncryption, true,
				fmt.Sprintf("OSCAR's own call encrypts as %s (%s)", res.Account, res.Verified), "", ""))
		}
	}
	return out
}

// enrolment lists the active providers' users without a valid secret and 2FA on.
func (h *host) enrolment(db *sql.DB) Check {
	const id, title = "oscar.enrolled", "every active OSCAR provider is enrolled in 2FA"
	q := "SELECT s.user_name, s.totp_enabled, COALESCE(s.totp_secret, '') FROM security s"
	var n int
	if db.QueryRowContext(h.ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'provider'").Scan(&n) == nil && n > 0 {
		q += " JOIN provider p ON p.provider_no = s.provider_no WHERE p.status = '1'"
	}
	rows, err := db.QueryContext(h.ctx, q+" ORDER BY s.user_name")
	if err != nil {
		if strings.Contains(err.Error(), "totp_") {
			return check(id, title, hipaaAuth, false, "", "OSCAR's 2FA columns are not in the security table", "emrkit apply")
		}
		return skipped(id, title, hipaaAuth, err)
	}
	defer rows.Close()
	var missing []string
	total := 0
	for rows.Next() {
		var user, secret string
		var enabled int
		if err := rows.Scan(&user, &enabled, &secret); err != nil {
			return skipped(id, title, hipaaAuth, err)
		}
		total++
		if enabled != 1 || totp.ValidSecret(secret) != nil {
			missing = append(missing, user)
		}
	}
	return check(id, title, hipaaAuth, len(missing) == 0, fmt.Sprintf("%d users, all enrolled", total),
		fmt.Sprintf("%d of %d users log in without a second factor: %s", len(missing), total, strings.Join(missing, ", ")),
		"emrkit 2fa enroll USER (or add them to totp.users and run emrkit apply)")
}

// pinsFresh checks that the users emrkit enrolled hold the code of now or the step before.
func (h *host) pinsFresh(db *sql.DB) Check {
	const id, title = "oscar.pins-fresh", "PINs hold the current codes (the cycle runs)"
	if h.jErr != nil {
		return skipped(id, title, hipaaAuth, h.jErr)
	}
	ours := twofa.Enrolled(h.entries, h.env.Config.Database.Name)
	if len(ours) == 0 {
		return Check{ID: id, Title: title, Status: Pass, Finding: "no user emrkit enrolled: nothing to cycle", Safeguard: hipaaAuth}
	}
	now := h.env.Now()
	var stale []string
	for user, digest := range ours {
		var pin, secret sql.NullString
		// Only enabled users are cycled; one disabled by hand is oscar.enrolled's finding.
		if err := db.QueryRowContext(h.ctx, "SELECT pin, totp_secret FROM security WHERE user_name = ? AND totp_enabled = 1", user).Scan(&pin, &secret); err != nil ||
			twofa.SecretDigest(secret.String) != digest {
			continue // disabled, re-enrolled elsewhere or gone: not a PIN emrkit cycles
		}
		cur, _ := totp.Code(secret.String, now)
		prev, _ := totp.Code(secret.String, now.Add(-totp.Period))
		if pin.String != cur && pin.String != prev {
			stale = append(stale, user)
		}
	}
	slices.Sort(stale)
	return check(id, title, hipaaAuth, len(stale) == 0, fmt.Sprintf("%d enrolled users' PINs are current", len(ours)),
		fmt.Sprintf("the PINs of %s are stale: the once-a-minute cycle is not running", strings.Join(stale, ", ")),
		"check that cron runs (systemctl status cron) and "+h.env.Config.Paths.CronFile+" is there; emrkit 2fa sync-pins")
}

// openemr checks "Securing OpenEMR": scripts, sqlconf.php, Apache's denies, the password policy.
func (h *host) openemr() []Check {
	cfg := h.env.Config
	in, err := openemr.Detect(cfg.OpenEMR, h.env.Host.OpenEMR.Roots)
	if err != nil {
		return []Check{skipped("openemr.install", "OpenEMR is installed and set up", hipaaAccess, err)}
	}
	var out []Check
	var open []string
	for _, s := range openemr.Scripts {
		fi, err := os.Lstat(filepath.Join(in.Root, s))
		if err != nil {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm()&0o077 != 0 || st.Uid != 0 {
			open = append(open, fmt.Sprintf("%s (%04o)", s, fi.Mode().Perm()))
		}
	}
	out = append(out, check("openemr.scripts", "setup and upgrade scripts are locked", hipaaAccess, len(open) == 0,
		"every setup/upgrade script is 0600 root", "readable by the web server: "+strings.Join(open, ", "), "emrkit apply"))

	var readable []string
	for _, site := range in.Sites {
		p := filepath.Join(in.Root, "sites", site, "sqlconf.php")
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o007 != 0 {
			readable = append(readable, fmt.Sprintf("%s (%04o)", p, fi.Mode().Perm()))
		}
	}
	out = append(out, check("openemr.sqlconf", "sqlconf.php is not world-readable", hipaaAccess, len(readable) == 0,
		"the database password is readable by the web server's group only", "every local user can read the database password: "+strings.Join(readable, ", "), "emrkit apply"))

	out = append(out, h.webDenies(in))
	out = append(out, h.apacheChecks()...)
	out = append(out, h.php())
	out = append(out, h.openemrPolicy(in)...)
	out = append(out, h.dbCheck("openemr.password-policy", passwordTitle, hipaaPasswords, func(db *sql.DB) Check {
		return h.passwordPolicy(db, in)
	}))
	return out
}

const passwordTitle = "OpenEMR's password policy is as strong as configured"

// passwordPolicy reads back the globals the installed version defines; those it does not are
// a warning, never a pass read from rows OpenEMR ignores.
func (h *host) passwordPolicy(db *sql.DB, in openemr.Install) Check {
	const id = "openemr.password-policy"
	policy, err := in.PasswordPolicy(h.env.Config.OpenEMR.PasswordPolicy)
	if err != nil {
		return skipped(id, passwordTitle, hipaaPasswords, err)
	}
	var weak, held []string
	for _, g := range policy.Globals {
		v, _, err := openemr.ReadGlobal(h.ctx, db, g.Name)
		if err != nil {
			return skipped(id, passwordTitle, hipaaPasswords, err)
		}
		if n, err := strconv.Atoi(v); err != nil || !strongEnough(g.Name, n, g.Value) {
			weak = append(weak, fmt.Sprintf("%s=%q (want %d)", g.Name, v, g.Value))
		} else {
			held = append(held, g.Name)
		}
	}
	c := check(id, passwordTitle, hipaaPasswords, len(weak) == 0,
		fmt.Sprintf("%s at least as strict as openemr.password_policy", strings.Join(held, ", ")), strings.Join(weak, ", "), "emrkit apply")
	if note := policy.Note(in.Version); note != "" {
		c.Finding += "; " + note
		if c.Status == Pass {
			c.Status, c.Fix = Warn, "upgrade OpenEMR (the policy it can hold is in place)"
		}
	}
	return c
}

// strongEnough compares a global with the policy: a stricter value passes too.
func strongEnough(name string, got, want int) bool {
	switch name {
	case "password_expiration_days", "password_max_failed_logins":
		return got > 0 && got <= want || want == 0 && got == 0
	}
	return got >= want
}
