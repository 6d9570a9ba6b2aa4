// Package plan owns emrkit's desired state: it turns the configuration and what is found on
// the host into the ordered steps of one release. The catalogue below is data, in the order
// steps run; each item names the release that introduced it, and a binary built as version V
// plans only items with since <= V, so any older release can be rebuilt from this tree.
package plan

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/cron"
	"github.com/emrkit/emrkit/pkg/debversion"
	"github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/migrate"
	"github.com/emrkit/emrkit/pkg/openemr"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/portal"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/twofa"
)

// Host is what the plan reads from the machine, kept apart so tests can point it elsewhere.
type Host struct {
	// PropertiesCandidates are probed, in order, when oscar.properties is not configured.
	PropertiesCandidates []string
	// ConfigPath is the configuration file, for jobs that run emrkit again (cron).
	ConfigPath string
	// Firewall is ufw and the probes the firewall steps use.
	Firewall firewall.Env
	// PGP is gpg, pgpgpg and the files of OSCAR's export encryption.
	PGP pgp.Env
	// OpenEMR is where OpenEMR and Apache are.
	OpenEMR openemr.Env
	// Portal is where the offsite portal's tunnel and replica live.
	Portal portal.Env
}

// DefaultHost probes where Debian's OSCAR packages put oscar.properties (Tomcat 9, 8, 7).
func DefaultHost() Host {
	return Host{
		PropertiesCandidates: []string{
			"/usr/share/tomcat9/oscar.properties",
			"/usr/share/tomcat8/oscar.properties",
			"/usr/share/tomcat7/oscar.properties",
		},
		ConfigPath: config.DefaultPath,
		Firewall:   firewall.DefaultEnv(),
		PGP:        pgp.DefaultEnv(),
		OpenEMR:    openemr.DefaultEnv(),
		Portal:     portal.DefaultEnv(),
	}
}

// Plan is one release's steps for a configuration, with the undoers for every kind any
// release journals. Close releases its database connection.
type Plan struct {
	Steps   []step.Step
	Undoers step.Registry
	// Warnings are what the host should know and the plan does not change.
	Warnings func(context.Context) []string
	db       *twofa.DB
	// shared are the other database connections steps opened.
	shared []*mariadb.Shared
	// openemrDB is OpenEMR's database as the hardening found it (nil while OpenEMR is not
	// installed), which the portal shares.
	openemrDB *mariadb.Shared
}

// Close releases the database connections that were opened.
func (p *Plan) Close() error {
	for _, s := range p.shared {
		s.Close()
	}
	return p.db.Close()
}

// env is what catalogue items build from.
type env struct {
	cfg   config.Config
	host  Host
	since string
	// version is the release planned, for content that changed between releases.
	version string
	db      *twofa.DB
	uris    *twofa.URIFile
	plan    *Plan
}

type item struct {
	since string
	build func(e env) ([]step.Step, error)
}

// catalogue lists every step emrkit knows, in run order. OSCAR's TOTP switch comes after
// the schema and the enrolments it relies on. Data migrations come last: they may run for
// minutes, and one that stops on bad data must not leave the clinic without its firewall.
var catalogue = []item{
	{since: "0.1.0", build: twofaSchema},
	{since: "0.1.0", build: twofaUsers},
	{since: "0.1.0", build: pinCron},
	{since: "0.1.0", build: totpSwitch},
	{since: openemr.Since, build: openemrHardening},
	{since: openemr.SecuritySince, build: openemrApacheSecurity},
	{since: firewall.Since, build: firewallRules},
	{since: firewall.HTTPSince, build: firewallHTTP},
	{since: "0.5.0", build: backupSchedule},
	{since: pgp.Since, build: pgpExports},
	{since: migrate.Since, build: migrations},
	{since: portal.Since, build: portalAccess},
}

// New builds the plan of release version for cfg. It connects to nothing: steps open the
// database when they first need it.
func New(cfg config.Config, h Host, version string) (*Plan, error) {
	e := env{cfg: cfg, host: h, version: version, db: twofa.NewDB(cfg.Database),
		uris: &twofa.URIFile{Path: filepath.Join(cfg.Paths.StateDir, twofa.URIFileName)}}
	p := &Plan{db: e.db, Warnings: func(context.Context) []string { return nil }}
	e.plan = p
	p.Undoers = undoers(e)
	for _, it := range catalogue {
		ok, err := debversion.AtMost(it.since, version)
		if err != nil {
			return nil, fmt.Errorf("plan for version %s: %w", version, err)
		}
		if !ok {
			continue
		}
		e.since = it.since
		s, err := it.build(e)
		if err != nil {
			return nil, err
		}
		for _, st := range s {
			// A step added to an older item later (the replica's MariaDB restart) is not
			// in an older release's plan.
			if ok, err := debversion.AtMost(st.Since(), version); err != nil || ok {
				p.Steps = append(p.Steps, st)
			}
		}
	}
	return p, nil
}

// undoers knows every kind any release journals, whatever the version: undo must work for
// entries this binary's own plan no longer makes.
func undoers(e env) step.Registry {
	r := step.Registry{
		props.Kind:       props.Undoer{},
		managedfile.Kind: managedfile.Undoer{},
		twofa.ColumnsKind: twofa.ColumnsUndoer{DB: e.db, Backup: func(ctx context.Context, table string) (string, error) {
			return backup.Before(e.cfg)(ctx, "before-undo-"+table, table)
		}},
		twofa.UserKind: twofa.UserUndoer{DB: e.db, URIs: e.uris},
	}
	maps.Copy(r, firewall.Undoers(e.host.Firewall))
	maps.Copy(r, pgp.Undoers(e.host.PGP))
	maps.Copy(r, migrate.Undoers(migrateEnv(e)))
	maps.Copy(r, openemr.Undoers(e.host.OpenEMR, e.cfg.Database))
	server := e.cfg.Database
	server.Name = "" // the portal's entries name their database
	shared := &mariadb.Shared{Config: server}
	e.plan.shared = append(e.plan.shared, shared)
	maps.Copy(r, portal.Undoers(e.host.Portal, shared))
	return r
}

// portalAccess is the offsite portal's database user, replica and tunnel (portal.*), on
// OpenEMR's database as the hardening (earlier in the catalogue) found it; while OpenEMR is
// not installed, the hardening defers with the reason and so does the portal.
func portalAccess(e env) ([]step.Step, error) {
	if !e.cfg.Portal.Enable || e.cfg.Profile != "openemr" {
		return nil, nil
	}
	db := e.plan.openemrDB
	if db == nil {
		return []step.Step{step.Unavailable{
			StepID: portal.InstallKind + ":portal", StepKind: portal.InstallKind, StepTarget: "portal", StepSince: e.since,
			What:   "offsite portal access (database user, replica, tunnel)",
			Reason: "OpenEMR is not installed or not set up yet (see the OpenEMR hardening's reason); run `emrkit apply` once it is",
		}}, nil
	}
	return portal.Steps(e.cfg, db, db.Config.Name, e.host.Portal, e.since)
}

// openemrHardening is "Securing OpenEMR": scripts locked, sqlconf.php, Apache, password globals.
func openemrHardening(e env) ([]step.Step, error) {
	if e.cfg.Profile != "openemr" {
		return nil, nil
	}
	h, err := openemr.Steps(e.cfg, e.host.OpenEMR, e.since)
	if err != nil {
		return nil, err
	}
	if h.DB != nil {
		e.plan.shared = append(e.plan.shared, h.DB)
		e.plan.openemrDB = h.DB
		e.plan.Warnings = h.Warnings
	}
	return h.Steps, nil
}

// openemrApacheSecurity is Apache's hardening beyond "Securing OpenEMR".
func openemrApacheSecurity(e env) ([]step.Step, error) {
	if e.cfg.Profile != "openemr" {
		return nil, nil
	}
	return openemr.SecuritySteps(e.cfg, e.host.OpenEMR, e.since)
}

// backupSchedule installs backup.schedule's cron entry, beside the PIN job's. Backups are
// encrypted to the export key when pgp.mode gives one.
func backupSchedule(e env) ([]step.Step, error) {
	encrypt := oscar(e) && (e.cfg.PGP.Mode == "generate" || e.cfg.PGP.Mode == "public-key")
	alerts, err := debversion.AtMost(cron.AlertsSince, e.version)
	if err != nil {
		return nil, err
	}
	s, err := cron.BackupStep(filepath.Dir(e.cfg.Paths.CronFile), e.host.ConfigPath, e.cfg.Backup, cron.Jobs{Encrypt: encrypt, Alerts: alerts}, e.since)
	if err != nil {
		return nil, err
	}
	var steps []step.Step
	for _, m := range s {
		steps = append(steps, m)
	}
	return steps, nil
}

// EMRDatabase is the EMR's database: database.* as configured, named on an OpenEMR host by
// the site's sqlconf.php.
func EMRDatabase(cfg config.Config, h Host) (config.Database, error) {
	db := cfg.Database
	if cfg.Profile != "openemr" {
		return db, nil
	}
	in, err := openemr.Detect(cfg.OpenEMR, h.OpenEMR.Roots)
	if err != nil {
		return db, err
	}
	db.Name = in.SQLConf.Database
	return db, nil
}

// firewallHTTP opens port 80 when firewall.allow_http says so.
func firewallHTTP(e env) ([]step.Step, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return firewall.HTTPSteps(ctx, e.cfg.Firewall, e.host.Firewall, e.since)
}

// migrateEnv is the data migrations' environment: the shared connection (a database that is
// not there defers them), progress on stderr, and a backup before any undo.
func migrateEnv(e env) migrate.Env {
	return migrate.Env{DB: e.db, Database: e.cfg.Database.Name, Progress: os.Stderr, Backup: backup.Before(e.cfg)}
}

// migrations runs the OSCAR data migrations named in config.Migrations (emrkit/migrations).
func migrations(e env) ([]step.Step, error) {
	if !oscar(e) {
		return nil, nil
	}
	return migrate.Steps(migrateEnv(e), e.cfg.Migrations, e.since)
}

// firewallRules: deny incoming but SSH and the EMR's HTTPS port, enabled last.
func firewallRules(e env) ([]step.Step, error) {
	return firewall.Steps(e.cfg.Firewall, e.cfg.Profile, e.host.Firewall, e.since)
}

// pgpExports sets up the encryption of OSCAR's patient exports (pgp.mode).
func pgpExports(e env) ([]step.Step, error) {
	if !oscar(e) {
		return nil, nil
	}
	pe := e.host.PGP
	pe.Properties, _ = PropertiesPath(e.cfg, e.host) // "" defers the PGP_* properties
	return pgp.Steps(e.cfg, pe, e.since)
}

func oscar(e env) bool { return e.cfg.Profile == "oscar" }

func twofaSchema(e env) ([]step.Step, error) {
	if !oscar(e) {
		return nil, nil
	}
	return []step.Step{
		twofa.ColumnsStep{DB: e.db, Table: "security", Required: true, SinceVersion: e.since},
		twofa.ColumnsStep{DB: e.db, Table: "SecurityArchive", SinceVersion: e.since},
	}, nil
}

func twofaUsers(e env) ([]step.Step, error) {
	if !oscar(e) {
		return nil, nil
	}
	var steps []step.Step
	for _, u := range e.cfg.TOTP.Users {
		// Gated, so a dry run on an OSCAR without the columns yet reports instead of failing.
		steps = append(steps, afterSchema(e, twofa.UserStep{DB: e.db, User: u, URIs: e.uris, Issuer: e.cfg.TOTP.Issuer, SinceVersion: e.since}))
	}
	return steps, nil
}

// pinCron installs the PIN cycle once the 2FA schema is there (it has nothing to cycle before).
func pinCron(e env) ([]step.Step, error) {
	if !oscar(e) {
		return nil, nil
	}
	s, err := cron.PINStep(e.cfg.Paths.CronFile, e.host.ConfigPath, e.since)
	if err != nil {
		return nil, err
	}
	return []step.Step{afterSchema(e, s)}, nil
}

// totpSwitch sets TOTP=1 once OSCAR's security table has the 2FA columns: switched on
// without them, OSCAR cannot log anyone in.
func totpSwitch(e env) ([]step.Step, error) {
	if !oscar(e) {
		return nil, nil
	}
	s, err := oscarProperty(e, "TOTP", "1")
	if err != nil {
		return nil, err
	}
	return []step.Step{afterSchema(e, s)}, nil
}

// afterSchema defers s until OSCAR's security table has the 2FA columns.
func afterSchema(e env, s step.Step) step.Step {
	schema := twofa.ColumnsStep{DB: e.db, Table: "security", Required: true}
	return step.Gated{Step: s, After: schema.ID(), Gate: func(ctx context.Context) error {
		ok, err := schema.Check(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return &step.DeferredError{Reason: "waits for OSCAR's 2FA columns in " + schema.Target()}
		}
		return nil
	}}
}

// oscarProperty sets key=value in oscar.properties, or defers when OSCAR is not installed.
func oscarProperty(e env, key, value string) (step.Step, error) {
	path, found := PropertiesPath(e.cfg, e.host)
	s := props.KeyStep{Path: path, Key: key, Value: value, SinceVersion: e.since}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if !found {
		return step.Unavailable{
			StepID: props.Kind + ":oscar.properties#" + key, StepKind: props.Kind,
			StepTarget: "oscar.properties#" + key, StepSince: e.since,
			What:   fmt.Sprintf("set %s=%s in oscar.properties", key, value),
			Reason: "OSCAR is not installed (no oscar.properties found); run `emrkit apply` after installing it",
		}, nil
	}
	return s, nil
}

// PropertiesPath returns the configured oscar.properties, or the first candidate that exists.
// A configured file is used as given, so a wrong path is an error rather than a deferral.
func PropertiesPath(cfg config.Config, h Host) (string, bool) {
	if cfg.OSCAR.Properties != "" {
		return cfg.OSCAR.Properties, true
	}
	for _, c := range h.PropertiesCandidates {
		if _, err := os.Stat(c); err == nil {
			return c, true
		}
	}
	return "", false
}
