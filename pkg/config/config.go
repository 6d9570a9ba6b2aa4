// Package config owns /etc/emrkit/emrkit.yaml: its keys and defaults, loading with errors that
// name the key and the fix, and writing it back atomically with mode 0600 (it may name a
// password file and reveals the host's layout).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/offsite"
)

// DefaultPath is where the package keeps the configuration.
const DefaultPath = "/etc/emrkit/emrkit.yaml"

// Config is the whole configuration file.
type Config struct {
	Profile  string   `yaml:"profile"`
	Database Database `yaml:"database"`
	OSCAR    OSCAR    `yaml:"oscar"`
	TOTP     TOTP     `yaml:"totp"`
	PGP      PGP      `yaml:"pgp"`
	Firewall Firewall `yaml:"firewall"`
	// Migrations are OSCAR data migrations to run on apply (emrkit/migrations).
	Migrations []string `yaml:"migrations"`
	Paths      Paths    `yaml:"paths"`
	// Backup is written only when set: the package rewrites this file on every configure, and
	// an older release's strict loader, run after a downgrade, must not meet a key it lacks.
	Backup Backup `yaml:"backup,omitempty"`
	// OpenEMR (since 0.5.0) is written only when set, for the same reason.
	OpenEMR OpenEMR `yaml:"openemr,omitempty"`
	// Portal (since 0.6.0) is written only when set, for the same reason.
	Portal Portal `yaml:"portal,omitempty"`
	// Alerts (since 0.8.2) is written only when set, for the same reason.
	Alerts Alerts `yaml:"alerts,omitempty"`
}

// Alerts says who is told when scheduled work goes wrong (see pkg/alert).
type Alerts struct {
	// MailTo is the address, or a local user; empty means DefaultMailTo, "off" sends none.
	MailTo string `yaml:"mail_to,omitempty"`
	// Sendmail is the mail program; empty means DefaultSendmail.
	Sendmail string `yaml:"sendmail,omitempty"`
}

// Debian's convention, as cron's: mail root through the MTA's sendmail.
const (
	DefaultMailTo   = "root"
	DefaultSendmail = "/usr/sbin/sendmail"
)

// Recipient is alerts.mail_to, or DefaultMailTo when unset ("" when alerts are off).
func (a Alerts) Recipient() string {
	switch a.MailTo {
	case "":
		return DefaultMailTo
	case "off":
		return ""
	}
	return a.MailTo
}

// Program is alerts.sendmail, or DefaultSendmail when unset.
func (a Alerts) Program() string {
	if a.Sendmail == "" {
		return DefaultSendmail
	}
	return a.Sendmail
}

// mailAddress is a local user or an address sendmail takes as one argument: no blanks,
// quotes or line breaks, so it can never add a header or a recipient.
var mailAddress = regexp.MustCompile(`^[A-Za-z0-9._%+-]+(@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)?$`)

func (a Alerts) validate() error {
	if to := a.Recipient(); to != "" && (!mailAddress.MatchString(to) || strings.HasPrefix(to, "-")) {
		return fmt.Errorf("alerts.mail_to: %q is not a mail address or a local user (like root or admin@clinic.example); \"off\" sends no alerts", shown(a.MailTo))
	}
	if !filepath.IsAbs(a.Program()) {
		return fmt.Errorf("alerts.sendmail: %q must be an absolute path (like %s)", shown(a.Sendmail), DefaultSendmail)
	}
	return nil
}

// Portal is an offsite patient portal's way into this OpenEMR server: its own database user,
// a reverse SSH tunnel the clinic opens to the portal host, and optionally a replica of the
// portal's tables only. Nothing is set up unless Enable is true.
type Portal struct {
	Enable bool `yaml:"enable,omitempty"`
	// Tables the portal reads; empty means DefaultPortalTables. PortalWriteTable is always
	// among them, with INSERT and UPDATE as well.
	Tables []string `yaml:"tables,omitempty"`
	// DBUser is the portal's MariaDB account (DefaultPortalDBUser), DBHost the one host it
	// may connect from (DefaultPortalDBHost: through the tunnel or the replica, 127.0.0.1).
	DBUser  string        `yaml:"db_user,omitempty"`
	DBHost  string        `yaml:"db_host,omitempty"`
	Tunnel  PortalTunnel  `yaml:"tunnel,omitempty"`
	Replica PortalReplica `yaml:"replica,omitempty"`
}

// PortalTunnel is the reverse SSH tunnel to the portal host; an empty Host means none.
type PortalTunnel struct {
	// Host and Port are the portal host's sshd (Port: 22 when unset).
	Host string `yaml:"host,omitempty"`
	Port Port   `yaml:"port,omitempty"`
	// User is the account on the portal host whose authorized_keys holds emrkit's key.
	User string `yaml:"user,omitempty"`
	// HostKey pins the portal host's sshd key ("ssh-ed25519 AAAA..."), as ssh-keyscan
	// prints it: a tunnel never trusts a key it was not given.
	HostKey string `yaml:"host_key,omitempty"`
	// RemotePort is where the portal host reaches the clinic's HTTPS (localhost:RemotePort
	// there, DefaultPortalRemotePort when unset); LocalPort is the clinic's HTTPS port
	// (443 when unset).
	RemotePort Port `yaml:"remote_port,omitempty"`
	LocalPort  Port `yaml:"local_port,omitempty"`
}

// PortalReplica is the filtered replica: a second, local mariadbd that replicates only the
// portal's tables from the clinic's server, for the offsite replica to pull from through the
// tunnel.
type PortalReplica struct {
	Enable bool `yaml:"enable,omitempty"`
	// Port is the local intermediate server's port on 127.0.0.1 (DefaultPortalReplicaPort);
	// RemotePort is where the portal host reaches it through the tunnel
	// (DefaultPortalReplicaRemotePort).
	Port       Port `yaml:"port,omitempty"`
	RemotePort Port `yaml:"remote_port,omitempty"`
}

// Portal defaults.
const (
	DefaultPortalDBUser            = "emrkit_portal"
	DefaultPortalDBHost            = "127.0.0.1"
	DefaultPortalSSHPort           = 22
	DefaultPortalRemotePort        = 18443
	DefaultPortalLocalPort         = 443
	DefaultPortalReplicaPort       = 3307
	DefaultPortalReplicaRemotePort = 13306
	// PortalWriteTable is the one table the portal user may also INSERT into and UPDATE
	// (patients' portal logins).
	PortalWriteTable = "patient_access_onsite"
)

// DefaultPortalTables are the tables an offsite portal shows by default: the patients'
// portal accounts, their demographics and their appointments (openemr-facts.md section 4).
var DefaultPortalTables = []string{PortalWriteTable, "patient_data", "openemr_postcalendar_events"}

// TableNames is portal.tables or the defaults, with PortalWriteTable always first.
func (p Portal) TableNames() []string {
	tables := p.Tables
	if len(tables) == 0 {
		tables = DefaultPortalTables
	}
	out := []string{PortalWriteTable}
	for _, t := range tables {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// User is portal.db_user or its default.
func (p Portal) User() string { return orDefault(p.DBUser, DefaultPortalDBUser) }

// Host is portal.db_host or its default.
func (p Portal) Host() string { return orDefault(p.DBHost, DefaultPortalDBHost) }

// SSHPort, Remote and Local are the tunnel's ports or their defaults.
func (t PortalTunnel) SSHPort() int { return portOr(t.Port, DefaultPortalSSHPort) }
func (t PortalTunnel) Remote() int  { return portOr(t.RemotePort, DefaultPortalRemotePort) }
func (t PortalTunnel) Local() int   { return portOr(t.LocalPort, DefaultPortalLocalPort) }

// Local and Remote are the replica's ports or their defaults.
func (r PortalReplica) Local() int  { return portOr(r.Port, DefaultPortalReplicaPort) }
func (r PortalReplica) Remote() int { return portOr(r.RemotePort, DefaultPortalReplicaRemotePort) }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func portOr(p Port, def int) int {
	if p.N == 0 && p.raw == "" {
		return def
	}
	return p.N
}

// OpenEMR is the OpenEMR profile's install and the hardening applied to it. Empty values
// mean the defaults below.
type OpenEMR struct {
	// Root is the OpenEMR tree; empty probes OpenEMRRoots.
	Root string `yaml:"root,omitempty"`
	// Site is the directory under sites/ whose sqlconf.php names the database ("default").
	Site string `yaml:"site,omitempty"`
	// WebUser runs PHP (Debian's Apache: www-data); sqlconf.php is left readable by its group.
	WebUser string `yaml:"web_user,omitempty"`
	// HTTPSRedirect sends plain HTTP to HTTPS (Apache must have an SSL site enabled).
	HTTPSRedirect bool `yaml:"https_redirect,omitempty"`
	// PasswordPolicy overrides the strong defaults of OpenEMR's password globals.
	PasswordPolicy PasswordPolicy `yaml:"password_policy,omitempty"`
	// URL is where Apache serves OpenEMR on this host, which `emrkit doctor` probes.
	URL string `yaml:"url,omitempty"`
}

// DefaultOpenEMRURL is openemr.url when the file does not set it.
const DefaultOpenEMRURL = "http://127.0.0.1/openemr"

// BaseURL is openemr.url or its default.
func (o OpenEMR) BaseURL() string {
	if o.URL == "" {
		return DefaultOpenEMRURL
	}
	return o.URL
}

// PasswordPolicy is the values emrkit gives OpenEMR's password globals; nil means the
// default in DefaultPasswordPolicy.
type PasswordPolicy struct {
	SecurePassword  *int `yaml:"secure_password,omitempty"`
	MinimumLength   *int `yaml:"gbl_minimum_password_length,omitempty"`
	History         *int `yaml:"password_history,omitempty"`
	ExpirationDays  *int `yaml:"password_expiration_days,omitempty"`
	MaxFailedLogins *int `yaml:"password_max_failed_logins,omitempty"`
}

// OpenEMRRoots are probed, in order, when openemr.root is empty.
var OpenEMRRoots = []string{"/var/www/openemr", "/var/www/html/openemr"}

// OpenEMR defaults.
const (
	DefaultOpenEMRSite    = "default"
	DefaultOpenEMRWebUser = "www-data"
)

// SiteName is openemr.site or its default.
func (o OpenEMR) SiteName() string {
	if o.Site == "" {
		return DefaultOpenEMRSite
	}
	return o.Site
}

// WebUserName is openemr.web_user or its default.
func (o OpenEMR) WebUserName() string {
	if o.WebUser == "" {
		return DefaultOpenEMRWebUser
	}
	return o.WebUser
}

// PasswordGlobal is one of OpenEMR's password globals with the value emrkit gives it.
type PasswordGlobal struct {
	Name  string
	Value int
	// Min, Max bound the values OpenEMR's Globals screen offers.
	Min, Max int
}

// Globals returns the five password globals with the configured values or the defaults:
// strong passwords on, at least 12 characters, the last 5 not reused, a change every 180
// days, and an account locked after 10 failed logins (OpenEMR 7.0 shipped 0: no limit).
func (p PasswordPolicy) Globals() []PasswordGlobal {
	pick := func(v *int, def int) int {
		if v == nil {
			return def
		}
		return *v
	}
	return []PasswordGlobal{
		{"secure_password", pick(p.SecurePassword, 1), 0, 1},
		{"gbl_minimum_password_length", pick(p.MinimumLength, 12), 0, 20},
		{"password_history", pick(p.History, 5), 0, 5},
		{"password_expiration_days", pick(p.ExpirationDays, 180), 0, 3650},
		{"password_max_failed_logins", pick(p.MaxFailedLogins, 10), 0, 1000},
	}
}

// Backup is the retention and schedule of `emrkit backup`.
type Backup struct {
	// Keep is how many manual backups to keep, newest first (0 keeps all); unset means
	// DefaultKeep. The backups emrkit takes before undoing a change are never pruned.
	Keep *int `yaml:"keep,omitempty"`
	// Schedule (since 0.5.0) is when cron takes a backup: daily, weekly, off, or a cron time
	// ("30 1 * * *"); empty means DefaultSchedule.
	Schedule string `yaml:"schedule,omitempty"`
	// Offsite (since 0.9.0) copies every backup `emrkit backup` takes to a restic repository
	// off the server; unset keeps backups on this server only.
	Offsite Offsite `yaml:"offsite,omitempty"`
}

// Offsite is where backups are copied off the server (pkg/offsite: restic over SFTP).
type Offsite struct {
	// Repository is restic's "sftp:USER@HOST:/PATH", "sftp://USER@HOST:PORT//PATH" or an
	// absolute path; empty means no offsite copies.
	Repository string `yaml:"repository,omitempty"`
	// PasswordFile holds the repository password; empty means DefaultOffsitePasswordFile.
	// `emrkit backup offsite init` generates it when missing.
	PasswordFile string `yaml:"password_file,omitempty"`
	// SSHKey and KnownHosts are ssh's files for the SFTP host; empty leaves root's ~/.ssh.
	SSHKey     string `yaml:"ssh_key,omitempty"`
	KnownHosts string `yaml:"known_hosts,omitempty"`
	// Keep is the retention restic forget applies after each copy.
	Keep OffsiteKeep `yaml:"keep,omitempty"`
	// ReadData is how much of the data the weekly check reads back (restic check
	// --read-data-subset: "10%", "1G", or "none"); empty means DefaultOffsiteReadData.
	ReadData string `yaml:"read_data,omitempty"`
}

// OffsiteKeep counts the newest daily, weekly and monthly snapshots kept; unset fields take
// DefaultOffsiteKeep's, 0 keeps none of that kind; 0 for all three keeps every copy.
type OffsiteKeep struct {
	Daily   *int `yaml:"daily,omitempty"`
	Weekly  *int `yaml:"weekly,omitempty"`
	Monthly *int `yaml:"monthly,omitempty"`
}

// Offsite defaults: a week of dailies, a month of weeklies, a year of monthlies.
const (
	DefaultOffsitePasswordFile = "/etc/emrkit/offsite.password"
	DefaultOffsiteReadData     = "10%"
)

// DefaultOffsiteKeep is the retention of fields backup.offsite.keep leaves unset.
var DefaultOffsiteKeep = offsite.Keep{Daily: 7, Weekly: 5, Monthly: 12}

// Enabled reports whether backups are copied offsite.
func (o Offsite) Enabled() bool { return o.Repository != "" }

// Repo is the repository o names.
func (o Offsite) Repo() offsite.Repo {
	return offsite.Repo{Repository: o.Repository, PasswordFile: orDefault(o.PasswordFile, DefaultOffsitePasswordFile),
		SSHKey: o.SSHKey, KnownHosts: o.KnownHosts}
}

// Retention is o's keep with the defaults filled in.
func (o Offsite) Retention() offsite.Keep {
	pick := func(p *int, def int) int {
		if p == nil {
			return def
		}
		return *p
	}
	d := DefaultOffsiteKeep
	return offsite.Keep{Daily: pick(o.Keep.Daily, d.Daily), Weekly: pick(o.Keep.Weekly, d.Weekly), Monthly: pick(o.Keep.Monthly, d.Monthly)}
}

// CheckSubset is restic check's --read-data-subset ("" for the structure only).
func (o Offsite) CheckSubset() string {
	switch o.ReadData {
	case "":
		return DefaultOffsiteReadData
	case "none":
		return ""
	}
	return o.ReadData
}

var readDataSubset = regexp.MustCompile(`^([0-9]{1,3}(\.[0-9]+)?%|[0-9]+[kKmMgGtT]?|[0-9]+/[0-9]+)$`)

func (o Offsite) validate() error {
	if !o.Enabled() {
		if o != (Offsite{}) {
			return errors.New("backup.offsite: repository is empty; give the restic repository (sftp:USER@HOST:/PATH) or remove backup.offsite")
		}
		return nil
	}
	if err := o.Repo().Check(); err != nil {
		return err
	}
	for _, k := range []struct {
		name string
		n    *int
	}{{"daily", o.Keep.Daily}, {"weekly", o.Keep.Weekly}, {"monthly", o.Keep.Monthly}} {
		if k.n != nil && (*k.n < 0 || *k.n > 10000) {
			return fmt.Errorf("backup.offsite.keep.%s: %d is out of range (0-10000)", k.name, *k.n)
		}
	}
	if o.ReadData != "" && o.ReadData != "none" && !readDataSubset.MatchString(o.ReadData) {
		return fmt.Errorf("backup.offsite.read_data: %q is not a share (10%%), a size (1G), n/t or none", shown(o.ReadData))
	}
	return nil
}

// DefaultSchedule is backup.schedule when the file does not set it.
const DefaultSchedule = "daily"

// CronTime is the cron time of backup.schedule ("" for off).
func (b Backup) CronTime() string {
	switch b.Schedule {
	case "", "daily":
		return "17 2 * * *"
	case "weekly":
		return "17 2 * * 0"
	case "off":
		return ""
	}
	return strings.Join(strings.Fields(b.Schedule), " ")
}

var cronField = regexp.MustCompile(`^[0-9*][0-9*/,-]*$`)

// DefaultKeep is backup.keep when the file does not set it.
const DefaultKeep = 7

// KeepBackups is backup.keep, or DefaultKeep when unset.
func (b Backup) KeepBackups() int {
	if b.Keep == nil {
		return DefaultKeep
	}
	return *b.Keep
}

// KnownMigrations are the names `migrations` accepts.
var KnownMigrations = []string{"middle-names", "roster-enrolled-to"}

type Database struct {
	Socket       string `yaml:"socket"`
	Host         string `yaml:"host"`
	Port         Port   `yaml:"port"`
	Name         string `yaml:"name"`
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
}

type OSCAR struct {
	Properties string `yaml:"properties"`  // empty = detect
	TomcatUser string `yaml:"tomcat_user"` // empty = detect
}

type TOTP struct {
	Users  []string `yaml:"users"`
	Issuer string   `yaml:"issuer"`
}

type PGP struct {
	Mode      string `yaml:"mode"`
	UID       string `yaml:"uid"`
	PublicKey string `yaml:"public_key"`
	GnupgHome string `yaml:"gnupghome"`
}

type Firewall struct {
	Enable    bool     `yaml:"enable"`
	HTTPSPort Port     `yaml:"https_port"`
	SSHPort   Port     `yaml:"ssh_port"` // 0 = detect
	Deny      []Port   `yaml:"deny"`
	AllowFrom []string `yaml:"allow_from"`
	// AllowHTTP opens port 80 to everyone (certbot's challenges, a redirect to HTTPS); since
	// 0.5.0, written only when set.
	AllowHTTP bool `yaml:"allow_http,omitempty"`
}

type Paths struct {
	StateDir  string `yaml:"state_dir"`
	BackupDir string `yaml:"backup_dir"`
	CronFile  string `yaml:"cron_file"`
	// PGPPassphraseFile is the export passphrase of pgp.mode symmetric; written only when
	// set, so an older release's strict loader (after a downgrade) never meets it.
	PGPPassphraseFile string `yaml:"pgp_passphrase_file,omitempty"`
}

// DefaultPGPPassphraseFile is paths.pgp_passphrase_file when unset: outside the state dir
// (0700 root), because Tomcat must read it.
const DefaultPGPPassphraseFile = "/etc/emrkit/pgp-export.pass"

// PGPPassphrase is paths.pgp_passphrase_file or its default.
func (p Paths) PGPPassphrase() string {
	return orDefault(p.PGPPassphraseFile, DefaultPGPPassphraseFile)
}

// inStateDir reports whether path is the state dir or under it.
func (p Paths) inStateDir(path string) bool {
	rel, err := filepath.Rel(filepath.Clean(p.StateDir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Port is a TCP port. It decodes from any scalar so that a wrong value ("abc") reaches
// Validate, which names the key, instead of failing in the YAML decoder without one.
type Port struct {
	N   int
	raw string
}

// P makes a Port.
func P(n int) Port { return Port{N: n} }

func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port must be a number", n.Line)
	}
	p.raw = n.Value
	v, err := strconv.Atoi(strings.TrimSpace(n.Value))
	if err != nil {
		p.N = -1
		return nil
	}
	p.N = v
	return nil
}

func (p Port) MarshalYAML() (any, error) { return p.N, nil }

func (p Port) check(key string, zeroOK bool) error {
	if p.N == 0 && zeroOK {
		return nil
	}
	if p.N < 1 || p.N > 65535 {
		raw := p.raw
		if raw == "" {
			raw = strconv.Itoa(p.N)
		}
		return fmt.Errorf("%s: %q is not a port (1-65535)", key, shown(raw))
	}
	return nil
}

// Default returns the configuration of design section 6.
func Default() Config {
	return Config{
		Profile:    "oscar",
		Database:   Database{Socket: "/run/mysqld/mysqld.sock", Port: P(3306), Name: "oscar_15", User: "root"},
		TOTP:       TOTP{Users: []string{"oscardoc"}, Issuer: "OSCAR"},
		PGP:        PGP{Mode: "generate", UID: "OSCAR Export <root@localhost>"},
		Firewall:   Firewall{Enable: true, HTTPSPort: P(8443), Deny: []Port{P(3306), P(8080)}, AllowFrom: []string{}},
		Migrations: []string{},
		Paths:      Paths{StateDir: "/var/lib/emrkit", BackupDir: "/var/backups/emrkit", CronFile: "/etc/cron.d/emrkit"},
	}
}

var (
	identifier = regexp.MustCompile(`^[A-Za-z0-9_$]{1,64}$`)
	// OSCAR's security.user_name; no quotes, blanks or separators.
	userName = regexp.MustCompile(`^[A-Za-z0-9_.@\-]{1,30}$`)
	// A directory under OpenEMR's sites/.
	siteName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$`)
)

// ValidUserName reports whether name is acceptable as an OSCAR user name.
func ValidUserName(name string) bool { return userName.MatchString(name) }

// Validate checks every key; the first error names the key, the bad value and what fits.
func (c Config) Validate() error {
	oneOf := func(key, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not one of %s", key, shown(v), strings.Join(allowed, ", "))
	}
	abs := func(key, p string, empty bool) error {
		if p == "" && empty {
			return nil
		}
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q must be an absolute path", key, shown(p))
		}
		return nil
	}
	checks := []func() error{
		func() error { return oneOf("profile", c.Profile, "oscar", "openemr") },
		func() error { return abs("database.socket", c.Database.Socket, true) },
		func() error { return c.Database.Port.check("database.port", false) },
		func() error {
			if !identifier.MatchString(c.Database.Name) {
				return fmt.Errorf("database.name: %q is not a database name (letters, digits, _ or $, at most 64)", shown(c.Database.Name))
			}
			return nil
		},
		func() error {
			if !userName.MatchString(c.Database.User) {
				return fmt.Errorf("database.user: %q is not a MariaDB user name (letters, digits, . _ @ -)", shown(c.Database.User))
			}
			return nil
		},
		func() error { return abs("database.password_file", c.Database.PasswordFile, true) },
		func() error { return abs("oscar.properties", c.OSCAR.Properties, true) },
		func() error {
			if c.OSCAR.TomcatUser != "" && !userName.MatchString(c.OSCAR.TomcatUser) {
				return fmt.Errorf("oscar.tomcat_user: %q is not a user name", shown(c.OSCAR.TomcatUser))
			}
			return nil
		},
		func() error {
			for i, u := range c.TOTP.Users {
				if !userName.MatchString(u) {
					return fmt.Errorf("totp.users[%d]: %q is not an OSCAR user name (letters, digits, . _ @ -, at most 30)", i, shown(u))
				}
			}
			return nil
		},
		func() error { return oneOf("pgp.mode", c.PGP.Mode, "generate", "public-key", "symmetric", "none") },
		func() error {
			if c.PGP.Mode == "public-key" && c.PGP.PublicKey == "" {
				return fmt.Errorf("pgp.public_key: required when pgp.mode is public-key (path to an armored public key)")
			}
			return abs("pgp.public_key", c.PGP.PublicKey, true)
		},
		func() error { return abs("pgp.gnupghome", c.PGP.GnupgHome, true) },
		func() error { return c.Firewall.HTTPSPort.check("firewall.https_port", false) },
		func() error { return c.Firewall.SSHPort.check("firewall.ssh_port", true) },
		func() error {
			for i, p := range c.Firewall.Deny {
				if err := p.check(fmt.Sprintf("firewall.deny[%d]", i), false); err != nil {
					return err
				}
			}
			return nil
		},
		func() error {
			for i, a := range c.Firewall.AllowFrom {
				if _, err := netip.ParsePrefix(a); err != nil {
					if _, err2 := netip.ParseAddr(a); err2 != nil {
						return fmt.Errorf("firewall.allow_from[%d]: %q is not an address or CIDR (e.g. 10.0.0.0/24)", i, shown(a))
					}
				}
			}
			return nil
		},
		func() error {
			for i, m := range c.Migrations {
				if err := oneOf(fmt.Sprintf("migrations[%d]", i), m, KnownMigrations...); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return abs("paths.state_dir", c.Paths.StateDir, false) },
		func() error { return abs("paths.backup_dir", c.Paths.BackupDir, false) },
		func() error { return abs("paths.cron_file", c.Paths.CronFile, false) },
		func() error {
			if err := abs("paths.pgp_passphrase_file", c.Paths.PGPPassphraseFile, true); err != nil {
				return err
			}
			if c.Paths.PGPPassphraseFile != "" && c.Paths.inStateDir(c.Paths.PGPPassphraseFile) {
				return fmt.Errorf("paths.pgp_passphrase_file: %q is inside paths.state_dir %s, which only root can enter; Tomcat must read the file: put it elsewhere (default %s)",
					shown(c.Paths.PGPPassphraseFile), shown(c.Paths.StateDir), DefaultPGPPassphraseFile)
			}
			return nil
		},
		func() error { return abs("openemr.root", c.OpenEMR.Root, true) },
		func() error {
			if u := c.OpenEMR.URL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return fmt.Errorf("openemr.url: %q is not an http:// or https:// URL", shown(u))
			}
			return nil
		},
		func() error {
			if s := c.OpenEMR.Site; s != "" && !siteName.MatchString(s) {
				return fmt.Errorf("openemr.site: %q is not a site directory name (letters, digits, . _ -)", shown(s))
			}
			return nil
		},
		func() error {
			if u := c.OpenEMR.WebUser; u != "" && !userName.MatchString(u) {
				return fmt.Errorf("openemr.web_user: %q is not a user name", shown(u))
			}
			return nil
		},
		func() error {
			for _, g := range c.OpenEMR.PasswordPolicy.Globals() {
				if g.Value < g.Min || g.Value > g.Max {
					return fmt.Errorf("openemr.password_policy.%s: %d is out of range (%d-%d)", g.Name, g.Value, g.Min, g.Max)
				}
			}
			return nil
		},
		func() error {
			switch c.Backup.Schedule {
			case "", "daily", "weekly", "off":
				return nil
			}
			f := strings.Fields(c.Backup.Schedule)
			ok := len(f) == 5
			for _, x := range f {
				ok = ok && cronField.MatchString(x)
			}
			if !ok {
				return fmt.Errorf("backup.schedule: %q is not daily, weekly, off or a cron time like \"30 1 * * *\"", shown(c.Backup.Schedule))
			}
			return nil
		},
		c.Portal.validate,
		c.Alerts.validate,
		c.Backup.Offsite.validate,
		func() error {
			if c.Portal.Enable && c.Profile != "openemr" {
				return fmt.Errorf("portal.enable: the offsite portal is OpenEMR's; set profile: openemr or portal.enable: false")
			}
			return nil
		},
		func() error {
			if n := c.Backup.KeepBackups(); n < 0 {
				return fmt.Errorf("backup.keep: %d is not a number of backups (0 keeps all)", n)
			}
			return nil
		},
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// WriteIfChanged writes c to path unless the file already holds exactly that, so a no-op
// reconfigure leaves the file (and its mtime) alone.
func WriteIfChanged(path string, c Config) error {
	want, err := render(c)
	if err != nil {
		return err
	}
	if cur, err := fsutil.ReadFile(path, MaxFileSize); err == nil && bytes.Equal(cur, want) {
		return nil
	}
	return write(path, want)
}

func render(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	header := []byte("# emrkit configuration; see `man emrkit` and /usr/share/doc/emrkit/README.md.\n" +
		"# Written by the package from debconf answers: `dpkg-reconfigure emrkit` to change them.\n" +
		"# Hand edits to these answers are kept and fed back to debconf.\n")
	return append(header, data...), nil
}

func write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return fsutil.WriteAtomic(path, data, 0o600, nil)
}

// Write saves c to path (0600, atomically), creating its directory (0755) when missing.
func Write(path string, c Config) error {
	data, err := render(c)
	if err != nil {
		return err
	}
	return write(path, data)
}

var (
	// A MariaDB table name emrkit will grant on: no quotes, dots or blanks.
	tableName = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
	// A DNS name or an address for the portal's sshd.
	hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.\-:]{0,252}[A-Za-z0-9])?$`)
	// A Unix user name on the portal host.
	unixUser = regexp.MustCompile(`^[a-z_][a-z0-9_\-]{0,31}$`)
	// A MariaDB account host: an address, a name, or a pattern with % (no quotes).
	accountHost = regexp.MustCompile(`^[A-Za-z0-9.%_:\-]{1,255}$`)
	// The one host key line form ssh-keyscan prints, without the host: "<type> <base64>".
	hostKeyLine = regexp.MustCompile(`^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) AAAA[A-Za-z0-9+/]+={0,2}$`)
)

// validate checks portal.*; names are checked even when the portal is off, so a bad
// value is caught when written, not when the portal is switched on.
func (p Portal) validate() error {
	for i, t := range p.Tables {
		if !tableName.MatchString(t) {
			return fmt.Errorf("portal.tables[%d]: %q is not a table name (letters, digits, _, at most 64)", i, shown(t))
		}
	}
	if p.DBUser != "" && !userName.MatchString(p.DBUser) {
		return fmt.Errorf("portal.db_user: %q is not a MariaDB user name (letters, digits, . _ @ -)", shown(p.DBUser))
	}
	if p.DBHost != "" && !accountHost.MatchString(p.DBHost) {
		return fmt.Errorf("portal.db_host: %q is not a host or pattern (e.g. 127.0.0.1)", shown(p.DBHost))
	}
	t := p.Tunnel
	if t.Host != "" && !hostName.MatchString(t.Host) {
		return fmt.Errorf("portal.tunnel.host: %q is not a host name or address", shown(t.Host))
	}
	if t.User != "" && !unixUser.MatchString(t.User) {
		return fmt.Errorf("portal.tunnel.user: %q is not a user name (lower-case letters, digits, _ -)", shown(t.User))
	}
	if k := strings.TrimSpace(t.HostKey); k != "" && !hostKeyLine.MatchString(k) {
		return fmt.Errorf("portal.tunnel.host_key: not a host key line like \"ssh-ed25519 AAAA...\" (copy it from `ssh-keyscan -t ed25519 <portal host>`, without the host name)")
	}
	if t.Host != "" && (t.User == "" || strings.TrimSpace(t.HostKey) == "") {
		return fmt.Errorf("portal.tunnel: host is set but user or host_key is not; both are needed (the host key is never accepted blindly)")
	}
	ports := []struct {
		key  string
		port Port
	}{{"portal.tunnel.port", t.Port}, {"portal.tunnel.remote_port", t.RemotePort}, {"portal.tunnel.local_port", t.LocalPort},
		{"portal.replica.port", p.Replica.Port}, {"portal.replica.remote_port", p.Replica.RemotePort}}
	for _, k := range ports {
		if k.port.N == 0 && k.port.raw == "" {
			continue
		}
		if err := k.port.check(k.key, false); err != nil {
			return err
		}
	}
	if t.Host != "" && p.Replica.Enable && t.Remote() == p.Replica.Remote() {
		return fmt.Errorf("portal.replica.remote_port: %d is portal.tunnel.remote_port too; pick another port", p.Replica.Remote())
	}
	return nil
}
