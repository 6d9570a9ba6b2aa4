package doctor

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/apache"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/fileperm"
	"github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/openemr"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/phpini"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/twofa"
)

// sensitive are ports that must never be reachable from the network: MariaDB, drugref/Tomcat's
// plain HTTP, PostgreSQL, Redis, memcached.
var sensitive = map[int]string{3306: "MariaDB", 8080: "drugref / Tomcat over plain HTTP", 5432: "PostgreSQL", 6379: "Redis", 11211: "memcached"}

// firewall checks ufw and what actually listens.
func (h *host) firewall() []Check {
	cfg := h.env.Config.Firewall
	const activeTitle, sshTitle, listenTitle = "the firewall is on and denies incoming by default", "SSH is allowed (no lock-out)",
		"every port listening on the network is allowed on purpose or blocked"
	view, err := h.env.Host.Firewall.View(h.ctx)
	if err != nil {
		return []Check{skipped("firewall.active", activeTitle, hipaaAccess, err), skipped("firewall.ssh", sshTitle, hipaaAccess, err),
			skipped("firewall.listeners", listenTitle, hipaaTransmit, err)}
	}
	var out []Check
	out = append(out, check("firewall.active", activeTitle, hipaaAccess, view.Active && view.Incoming == "deny",
		"ufw is active, default deny (incoming)",
		fmt.Sprintf("ufw active: %v, default incoming: %s", view.Active, view.Incoming), "emrkit apply (firewall.enable: true)"))

	listeners, lerr := listening(h.env.ProcNet)
	det, _ := firewall.DetectSSH(h.env.Host.Firewall.GatherSSH(h.ctx, cfg.SSHPort.N))
	ssh := det.Ports
	if len(ssh) == 0 {
		ssh = []int{22}
	}
	var closed []string
	for _, p := range ssh {
		if a, _ := view.Verdict(p); a != "allow" && a != "limit" {
			closed = append(closed, strconv.Itoa(p))
		}
	}
	sshCheck := check("firewall.ssh", sshTitle, hipaaAccess, len(closed) == 0, fmt.Sprintf("SSH %v allowed, sshd listening", ssh),
		"SSH port(s) "+strings.Join(closed, ", ")+" are not allowed: the next session may be locked out", "emrkit firewall apply (or ufw allow PORT/tcp)")
	// An allowed port nobody listens on is no way in either: the rule alone proves nothing.
	var silent []string
	for _, p := range ssh {
		if lerr == nil && !slices.Contains(listeners, p) {
			silent = append(silent, strconv.Itoa(p))
		}
	}
	if sshCheck.Status == Pass && len(silent) > 0 {
		sshCheck.Status, sshCheck.Fix = Warn, "systemctl status ssh (or set firewall.ssh_port to the port sshd listens on)"
		sshCheck.Finding = fmt.Sprintf("SSH %v is allowed, but nothing listens on %s from the network: no sshd answers there", ssh, strings.Join(silent, ", "))
	}
	out = append(out, sshCheck)

	if lerr != nil {
		return append(out, skipped("firewall.listeners", listenTitle, hipaaTransmit, lerr))
	}
	expected := map[int]bool{cfg.HTTPSPort.N: true}
	if cfg.HTTPSPort.N == 0 {
		expected[firewall.DefaultHTTPSPort(h.profile)] = true
	}
	if cfg.AllowHTTP {
		expected[80] = true
	}
	for _, p := range ssh {
		expected[p] = true
	}
	var fails, warns []string
	for _, p := range listeners {
		action, rule := view.Verdict(p)
		reachable := action == "allow" || action == "limit"
		switch {
		case sensitive[p] != "" && reachable:
			fails = append(fails, fmt.Sprintf("%d (%s) is reachable%s", p, sensitive[p], via(rule)))
		case sensitive[p] != "" && rule == "":
			// Blocked only while the default policy is deny: one `ufw default allow` away.
			fails = append(fails, fmt.Sprintf("%d (%s) listens on the network with no rule denying it", p, sensitive[p]))
		case !reachable || expected[p]:
		default:
			warns = append(warns, fmt.Sprintf("%d is reachable%s", p, via(rule)))
		}
	}
	c := Check{ID: "firewall.listeners", Title: listenTitle, Safeguard: hipaaTransmit, Status: Pass,
		Finding: fmt.Sprintf("%d ports listen on the network; each is allowed on purpose or blocked", len(listeners))}
	switch {
	case len(fails) > 0:
		c.Status, c.Finding, c.Fix = Fail, strings.Join(append(fails, warns...), "; "), "emrkit apply (firewall.deny), or bind the service to 127.0.0.1"
	case len(warns) > 0:
		c.Status, c.Finding, c.Fix = Warn, strings.Join(warns, "; "), "deny the port, or keep it open on purpose"
	}
	return append(out, c)
}

func via(rule string) string {
	if rule == "" {
		return " (no rule denies it)"
	}
	return " (ufw " + rule + ")"
}

// listening returns the TCP ports listening on an address other than loopback, from the
// kernel's socket tables (readable by every user).
func listening(procNet string) ([]int, error) {
	var ports []int
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(procNet, name))
		if err != nil {
			if name == "tcp6" && os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // LISTEN
				continue
			}
			addr, port, ok := parseProcAddr(fields[1])
			if ok && !addr.IsLoopback() && !slices.Contains(ports, port) {
				ports = append(ports, port)
			}
		}
		f.Close()
	}
	slices.Sort(ports)
	return ports, nil
}

// parseProcAddr reads /proc/net/tcp's "0100007F:0CEA" (little-endian words, hex port).
func parseProcAddr(s string) (netip.Addr, int, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	raw, err2 := hex.DecodeString(a)
	if err != nil || err2 != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, false
	}
	for i := 0; i < len(raw); i += 4 { // each 32-bit word is in host (little-endian) order
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return addr.Unmap(), int(port), true
}

// mariadb checks MariaDB's own accounts.
func (h *host) mariadb() []Check {
	titles := map[string]string{
		"anonymous": "no anonymous MariaDB accounts", "remote-root": "MariaDB root logs in only locally",
		"no-password": "every MariaDB account needs authentication", "test-database": "no `test` database",
	}
	order := []string{"anonymous", "remote-root", "no-password", "test-database"}
	if h.dbErr != nil {
		var out []Check
		for _, k := range order {
			out = append(out, skipped("mariadb."+k, titles[k], hipaaUniqueUser, fmt.Errorf("MariaDB cannot be read: %v", h.dbErr)))
		}
		return out
	}
	checks, err := mariadb.AccountChecks(h.ctx, h.db)
	var out []Check
	for _, k := range order {
		if err != nil {
			out = append(out, skipped("mariadb."+k, titles[k], hipaaUniqueUser, err))
			continue
		}
		for _, c := range checks {
			if c.Kind == k {
				out = append(out, check("mariadb."+k, titles[k], hipaaUniqueUser, len(c.Found) == 0, "none found",
					c.Finding+": "+strings.Join(c.Found, ", "), c.Fix))
			}
		}
	}
	return out
}

// coveredKinds are the journal kinds a check above already reports on: their drift is that
// check's finding, not the journal's (one fault, one failing check).
var coveredKinds = map[string]bool{
	twofa.UserKind: true, managedfile.Kind: true, props.Kind: true, fileperm.Kind: true, apache.Kind: true, apache.ModKind: true, phpini.Kind: true, openemr.GlobalKind: true,
	firewall.KindRule: true, firewall.KindEnable: true, firewall.KindPolicy: true, firewall.KindProfile: true,
	pgp.KeyKind: true, pgp.HomeKind: true, pgp.SecretsKind: true,
}

// journal checks that the host still holds every change emrkit journaled that no other check
// looks at (the 2FA columns, data migrations, ...).
func (h *host) journal() []Check {
	const id, title = "journal.drift", "the host still holds what emrkit applied"
	if h.jErr != nil {
		return []Check{skipped(id, title, hipaaEvaluation, h.jErr)}
	}
	if h.plan == nil {
		return []Check{skipped(id, title, hipaaEvaluation, fmt.Errorf("cannot plan for this configuration"))}
	}
	var drift, waiting []string
	for _, r := range step.Inspect(h.ctx, h.entries, h.plan.Undoers) {
		switch {
		case r.State == journal.Deferred || r.State == journal.Pending:
			waiting = append(waiting, r.ID)
		case r.State == journal.Done && r.Host != "matches" && !coveredKinds[r.Kind]:
			drift = append(drift, r.ID+" ("+r.Host+")")
		}
	}
	switch {
	case len(drift) > 0:
		return []Check{check(id, title, hipaaEvaluation, false, "", "changed since emrkit applied it: "+strings.Join(drift, ", "),
			"emrkit status; emrkit apply puts them back")}
	case len(waiting) > 0:
		return []Check{{ID: id, Title: title, Status: Warn, Safeguard: hipaaEvaluation,
			Finding: "waiting or interrupted: " + strings.Join(waiting, ", "), Fix: "emrkit apply"}}
	}
	return []Check{check(id, title, hipaaEvaluation, true, fmt.Sprintf("%d journaled changes, none drifted", len(h.entries)), "", "")}
}

// backups checks the newest backup's age and encryption, and the last restore test.
func (h *host) backups() []Check {
	cfg := h.env.Config
	const ageTitle, encTitle, testTitle = "a recent backup exists", "backups are encrypted", "the newest backup was proven to restore"
	maxAge := 26 * time.Hour
	if cfg.Backup.Schedule == "weekly" {
		maxAge = 8 * 24 * time.Hour
	}
	db := h.dbName
	newest, ok, err := backup.Newest(cfg.Paths.BackupDir, db, backup.ManualLabel)
	if err != nil {
		return []Check{skipped("backup.recent", ageTitle, hipaaBackup, err), skipped("backup.encrypted", encTitle, hipaaEncryption, err),
			skipped("backup.restore-test", testTitle, hipaaTesting, err)}
	}
	var out []Check
	if !ok {
		out = append(out, check("backup.recent", ageTitle, hipaaBackup, false, "", "no backup of "+db+" in "+cfg.Paths.BackupDir,
			"emrkit backup --encrypt (backup.schedule takes them)"))
	} else {
		age := h.env.Now().Sub(newest.Time)
		out = append(out, check("backup.recent", ageTitle, hipaaBackup, age <= maxAge,
			fmt.Sprintf("%s, %s old", filepath.Base(newest.Path), age.Round(time.Minute)),
			fmt.Sprintf("the newest backup is %s old (%s); the schedule allows %s", age.Round(time.Hour), filepath.Base(newest.Path), maxAge),
			"check cron and /etc/cron.d/emrkit-backup; emrkit backup --encrypt"))
		if newest.Encrypted {
			out = append(out, check("backup.encrypted", encTitle, hipaaEncryption, true, filepath.Base(newest.Path)+" is an OpenPGP message", "", ""))
		} else {
			out = append(out, Check{ID: "backup.encrypted", Title: encTitle, Status: Warn, Safeguard: hipaaEncryption,
				Finding: filepath.Base(newest.Path) + " is not encrypted (root-only file)", Fix: "emrkit backup --encrypt --key FILE"})
		}
	}
	last, found, err := backup.LastVerify(cfg.Paths.StateDir)
	switch {
	case err != nil:
		out = append(out, skipped("backup.restore-test", testTitle, hipaaTesting, err))
	case !found:
		out = append(out, check("backup.restore-test", testTitle, hipaaTesting, false, "", "no restore test has run", "emrkit backup verify"))
	case last.Interrupted:
		out = append(out, Check{ID: "backup.restore-test", Title: testTitle, Status: Warn, Safeguard: hipaaTesting,
			Finding: fmt.Sprintf("the last restore test, of %s on %s, was interrupted before it could judge the backup", filepath.Base(last.File), last.Time.Format(time.DateOnly)),
			Fix:     "emrkit backup verify"})
	case !last.OK:
		out = append(out, check("backup.restore-test", testTitle, hipaaTesting, false, "",
			fmt.Sprintf("the restore test of %s on %s FAILED: %s", filepath.Base(last.File), last.Time.Format(time.DateOnly), last.Problem),
			"take a new backup and run emrkit backup verify"))
	case h.env.Now().Sub(last.Time) > 8*24*time.Hour:
		out = append(out, Check{ID: "backup.restore-test", Title: testTitle, Status: Warn, Safeguard: hipaaTesting,
			Finding: fmt.Sprintf("the last restore test passed on %s, more than a week ago", last.Time.Format(time.DateOnly)), Fix: "emrkit backup verify"})
	default:
		out = append(out, check("backup.restore-test", testTitle, hipaaTesting, true,
			fmt.Sprintf("%s restored on %s: %d tables, %d rows identical", filepath.Base(last.File), last.Time.Format(time.DateOnly), last.Tables, last.Rows), "", ""))
	}
	return out
}
