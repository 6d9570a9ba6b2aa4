package openemr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emrkit/emrkit/pkg/apache"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fileperm"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/phpini"
	"github.com/emrkit/emrkit/pkg/step"
)

// Since is the release that introduced the OpenEMR steps; SecuritySince the Apache hardening
// beyond the guide.
const (
	Since         = "0.5.0"
	SecuritySince = "0.8.0"
)

// InstallKind marks the one deferred step that stands for every OpenEMR step while OpenEMR
// is not installed.
const InstallKind = "openemr.install"

// Env is the host as the OpenEMR steps see it; tests point it elsewhere.
type Env struct {
	// Roots are probed, in order, when openemr.root is empty.
	Roots  []string
	Apache apache.Env
	PHP    phpini.Env
}

// DefaultEnv is a Debian host.
func DefaultEnv() Env {
	return Env{Roots: config.OpenEMRRoots, Apache: apache.DefaultEnv(), PHP: phpini.DefaultEnv()}
}

// Hardening is the steps for cfg's OpenEMR and the database connection they share (the
// caller closes it).
type Hardening struct {
	Steps []step.Step
	DB    *mariadb.Shared
	// notes are what emrkit found it cannot change on this install.
	notes []string
}

// Steps returns the hardening in run order: the scripts locked, every site's sqlconf.php,
// the Apache snippet, then the password globals. OpenEMR not installed (or not set up yet)
// gives one deferred step; a configured root or site that is wrong is an error.
func Steps(cfg config.Config, env Env, since string) (Hardening, error) {
	in, err := Detect(cfg.OpenEMR, env.Roots)
	var absent *NotInstalledError
	if errors.As(err, &absent) {
		return Hardening{Steps: []step.Step{step.Unavailable{
			StepID: InstallKind + ":openemr", StepKind: InstallKind, StepTarget: "openemr", StepSince: since,
			What: "OpenEMR hardening (setup scripts, sqlconf.php, Apache, password policy)", Reason: absent.Reason,
		}}}, nil
	}
	if err != nil {
		return Hardening{}, err
	}
	if cfg.OpenEMR.HTTPSRedirect {
		if err := SSLSiteEnabled(env.Apache); err != nil {
			return Hardening{}, err
		}
	}
	var steps []step.Step
	for _, s := range Scripts {
		path := filepath.Join(in.Root, s)
		if _, err := os.Lstat(path); err != nil {
			continue // not in this version
		}
		steps = append(steps, fileperm.Step{Path: path, Want: fileperm.Perm{Mode: 0o600},
			What: "OpenEMR setup/upgrade script, unreachable from the web", SinceVersion: since})
	}
	for _, site := range in.Sites {
		steps = append(steps, fileperm.Step{Path: filepath.Join(in.Root, "sites", site, "sqlconf.php"),
			Want: fileperm.Perm{Mode: 0o640, GID: in.WebGID},
			What: "OpenEMR database settings, readable by " + in.WebGroup + " only", SinceVersion: since})
	}
	steps = append(steps, apache.ConfStep{Env: env.Apache, Name: ConfName, Content: ApacheConf(in.Roots(), cfg.OpenEMR.HTTPSRedirect),
		What: "patient documents, setup scripts and contrib/ off the web", SinceVersion: since})
	dbc := cfg.Database
	dbc.Name = in.SQLConf.Database
	h := Hardening{DB: &mariadb.Shared{Config: dbc}}
	// Without the version's own list no global is written: a row OpenEMR does not read
	// enforces nothing. The rest of the hardening does not wait for it.
	policy, err := in.PasswordPolicy(cfg.OpenEMR.PasswordPolicy)
	if err != nil {
		h.notes = append(h.notes, err.Error()+"; the password globals are not written")
	}
	for _, g := range policy.Globals {
		steps = append(steps, GlobalStep{DB: h.DB, Name: g.Name, Value: g.Value, SinceVersion: since})
	}
	if note := policy.Note(in.Version); note != "" {
		h.notes = append(h.notes, note)
	}
	h.Steps = steps
	return h, nil
}

// SecuritySteps are the Apache and PHP hardening beyond the guide (SecurityConf, the module
// its headers need, the PHP drop-in of each mod_php), a release younger than the rest: a plan for an older release leaves them
// out. OpenEMR not installed gives none: Steps' deferred step stands for them.
func SecuritySteps(cfg config.Config, env Env, since string) ([]step.Step, error) {
	in, err := Detect(cfg.OpenEMR, env.Roots)
	var absent *NotInstalledError
	if errors.As(err, &absent) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	steps := []step.Step{
		apache.ModStep{Env: env.Apache, Name: HeadersModule, What: "for the response headers on OpenEMR's paths", SinceVersion: since},
		apache.ConfStep{Env: env.Apache, Name: SecurityConfName, Content: SecurityConf(in.Roots(), cfg.OpenEMR.HTTPSRedirect),
			What: "no version on show, no TRACE, TLS 1.2+, security headers", SinceVersion: since},
	}
	// PHP under Apache's mod_php; PHP-FPM reads its own pools, which emrkit leaves alone.
	sapis, err := env.PHP.SAPIDirs()
	if err != nil {
		return nil, err
	}
	for _, dir := range sapis {
		s, err := phpini.NewStep(dir, cfg.OpenEMR.HTTPSRedirect, env.Apache, since)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// Undoers reverses every OpenEMR kind; conn is how to reach MariaDB (each entry names its
// database).
func Undoers(env Env, conn config.Database) step.Registry {
	return step.Registry{
		fileperm.Kind:  fileperm.Undoer{},
		apache.Kind:    apache.Undoer{Env: env.Apache},
		apache.ModKind: apache.ModUndoer{Env: env.Apache},
		phpini.Kind:    phpini.Undoer{Apache: env.Apache},
		GlobalKind:     GlobalUndoer{DB: &mariadb.Shared{Config: conn}},
	}
}

// SSLSiteEnabled is the condition of openemr.https_redirect: Apache serves HTTPS somewhere.
func SSLSiteEnabled(a apache.Env) error {
	fail := errors.New("openemr.https_redirect: Apache has no SSL site enabled, and sending HTTP to HTTPS would cut " +
		"OpenEMR off; enable one first (a2enmod ssl; a2ensite default-ssl, with your certificate) or set it to false")
	if _, err := os.Stat(filepath.Join(a.Dir, "mods-enabled", "ssl.load")); err != nil {
		return fail
	}
	sites, _ := filepath.Glob(filepath.Join(a.Dir, "sites-enabled", "*"))
	for _, s := range sites {
		data, err := fsutil.ReadThroughLink(s, fsutil.TextLimit)
		if err == nil && strings.Contains(strings.ToLower(string(data)), "sslengine on") {
			return nil
		}
	}
	return fail
}

// Warnings are what an OpenEMR host should know and emrkit does not change: the globals the
// version cannot enforce, MariaDB's accounts.
func (h Hardening) Warnings(ctx context.Context) []string {
	out := slices.Clone(h.notes)
	conn, err := h.DB.Get(ctx)
	if err != nil {
		return out // deferred or failing: the steps say so
	}
	accounts, err := AccountWarnings(ctx, conn)
	if err != nil {
		accounts = append(accounts, err.Error())
	}
	return append(out, accounts...)
}
