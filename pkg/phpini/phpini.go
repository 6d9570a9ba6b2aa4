// Package phpini owns emrkit's drop-in for PHP's Apache module (mod_php, the apache2 SAPI):
// conf.d/99-emrkit-openemr.ini in each /etc/php/<version>/apache2, journal kind "php.ini".
// It raises the limits OpenEMR's install guide asks for (never lowers one the admin set
// higher) and sets the session cookie's safe defaults; a running Apache is reloaded
// gracefully after the run that wrote it and after undo, since mod_php reads its ini files
// when Apache starts. It reads PHP's ini files as PHP does: php.ini, then conf.d/*.ini in name order, the
// last setting winning.
package phpini

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/apache"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/step"
)

// Kind is the journal kind of the drop-in.
const Kind = "php.ini"

// DropIn is the drop-in's name in conf.d: after Debian's 10-/20- module files.
const DropIn = "99-emrkit-openemr.ini"

// Env is where PHP's configuration is; tests point it elsewhere.
type Env struct {
	// Dir holds a directory per PHP version (/etc/php).
	Dir string
}

// DefaultEnv is Debian's PHP.
func DefaultEnv() Env { return Env{Dir: "/etc/php"} }

// SAPIDirs are the apache2 SAPI directories (/etc/php/8.2/apache2) that have a conf.d.
func (e Env) SAPIDirs() ([]string, error) {
	if e.Dir == "" {
		return nil, nil // no PHP configured for this host (a test's Env)
	}
	dirs, err := filepath.Glob(filepath.Join(e.Dir, "*", "apache2", "conf.d"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range dirs {
		out = append(out, filepath.Dir(d))
	}
	sort.Strings(out)
	return out, nil
}

// Limit is a setting OpenEMR needs at least Value of.
type Limit struct {
	Name  string
	Value string
}

// Limits are OpenEMR's recommended PHP limits (its install guide; Debian's max_input_vars is
// 1000, too few for the Globals and layout screens).
var Limits = []Limit{{"max_input_vars", "3000"}, {"post_max_size", "30M"}, {"upload_max_filesize", "30M"}, {"memory_limit", "256M"}}

// Session are the session settings the drop-in sets. SameSite Lax, not Strict: Strict would
// drop the session on a link into OpenEMR from mail or another site.
var Session = [][2]string{{"session.use_strict_mode", "1"}, {"session.cookie_httponly", "1"}, {"session.cookie_samesite", "Lax"}}

// builtin are PHP 8's own defaults of the settings emrkit reads, for an ini that leaves them
// unset (Debian's php.ini comments max_input_vars out).
var builtin = map[string]string{"max_input_vars": "1000", "post_max_size": "8M", "upload_max_filesize": "2M", "memory_limit": "128M",
	"session.use_strict_mode": "0", "session.cookie_httponly": "0", "session.cookie_samesite": "", "session.cookie_secure": "0",
	"expose_php": "1", "display_errors": "1"}

// Effective reads the settings of the SAPI in dir as PHP would, leaving out skip (a conf.d
// file name): the values the admin has without emrkit's drop-in.
func Effective(dir, skip string) (map[string]string, error) {
	files := []string{filepath.Join(dir, "php.ini")}
	more, err := filepath.Glob(filepath.Join(dir, "conf.d", "*.ini"))
	if err != nil {
		return nil, err
	}
	sort.Strings(more)
	for _, f := range more {
		if filepath.Base(f) != skip {
			files = append(files, f)
		}
	}
	out := map[string]string{}
	for k, v := range builtin {
		out[k] = v
	}
	for _, f := range files {
		// conf.d entries are links into mods-available: PHP reads through them.
		data, err := fsutil.ReadThroughLink(f, fsutil.TextLimit)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read PHP's settings: %w", err)
		}
		parse(string(data), out)
	}
	return out, nil
}

// parse adds the settings of one ini file to into. Sections [PATH=...] and [HOST=...] apply
// to some requests only: they are left out.
func parse(ini string, into map[string]string) {
	scoped := false
	for _, line := range strings.Split(ini, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == ';' || line[0] == '#':
			continue
		case line[0] == '[':
			upper := strings.ToUpper(line)
			scoped = strings.HasPrefix(upper, "[PATH=") || strings.HasPrefix(upper, "[HOST=")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || scoped {
			continue
		}
		v = strings.TrimSpace(v)
		if i := strings.Index(v, " ;"); i >= 0 && !strings.HasPrefix(v, "\"") {
			v = strings.TrimSpace(v[:i])
		}
		into[strings.TrimSpace(k)] = strings.Trim(v, "\"")
	}
}

// Bytes reads a PHP size (30M, 1G, 512K, -1 for no limit) as bytes; -1 stays -1.
func Bytes(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			mult, v = 1<<10, v[:n-1]
		case 'm', 'M':
			mult, v = 1<<20, v[:n-1]
		case 'g', 'G':
			mult, v = 1<<30, v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	if n < 0 {
		return -1, true
	}
	return n * mult, true
}

// Enough reports whether a setting's value is at least want (-1, no limit, is).
func Enough(got, want string) bool {
	g, ok := Bytes(got)
	w, _ := Bytes(want)
	return ok && (g == -1 || g >= w)
}

// On reads a PHP boolean.
func On(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "on", "true", "yes":
		return true
	}
	return false
}

// Wanted is what the drop-in must hold for a SAPI whose settings are current: the limits
// that are lower than OpenEMR's, the session settings, and cookie_secure when every request
// comes over HTTPS.
func Wanted(current map[string]string, https bool) [][2]string {
	var out [][2]string
	for _, l := range Limits {
		if cur, ok := current[l.Name]; !ok || !Enough(cur, l.Value) {
			out = append(out, [2]string{l.Name, l.Value})
		}
	}
	out = append(out, Session...)
	if https {
		out = append(out, [2]string{"session.cookie_secure", "1"})
	}
	return out
}

// Content is the drop-in holding settings.
func Content(settings [][2]string) []byte {
	var b strings.Builder
	b.WriteString("; Written by emrkit: PHP for OpenEMR (its recommended limits, session cookies).\n")
	b.WriteString("; `emrkit revert --all` removes it; edits here are kept by emrkit's undo.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = %s\n", s[0], s[1])
	}
	return []byte(b.String())
}

// Step writes the drop-in of one SAPI; the run's graceful reload of Apache makes PHP read it.
type Step struct {
	File   managedfile.Step
	Apache apache.Env
}

// NewStep is the step for the SAPI in dir (https: every request comes over HTTPS).
func NewStep(dir string, https bool, a apache.Env, since string) (Step, error) {
	cur, err := Effective(dir, DropIn)
	if err != nil {
		return Step{}, err
	}
	return Step{Apache: a, File: managedfile.Step{Path: filepath.Join(dir, "conf.d", DropIn), Content: Content(Wanted(cur, https)),
		Mode: 0o644, What: "PHP for OpenEMR", SinceVersion: since}}, nil
}

func (s Step) Kind() string   { return Kind }
func (s Step) Target() string { return s.File.Path }
func (s Step) ID() string     { return Kind + ":" + s.File.Path }
func (s Step) Since() string  { return s.File.SinceVersion }
func (s Step) Describe() string {
	return "PHP: " + s.File.Path + " (OpenEMR's limits, session cookies)"
}
func (s Step) Preflight(ctx context.Context) error     { return s.File.Preflight(ctx) }
func (s Step) Check(ctx context.Context) (bool, error) { return s.File.Check(ctx) }
func (s Step) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	return s.File.Capture(ctx)
}

func (s Step) Apply(ctx context.Context, raw json.RawMessage) error { return s.File.Apply(ctx, raw) }

// Activation has a running Apache restart mod_php, which reads its ini files then.
func (s Step) Activation() step.Activation { return s.Apache.Activation() }

// Undoer removes the drop-in (or puts back the file it replaced) while it holds emrkit's
// content, then reloads Apache.
type Undoer struct{ Apache apache.Env }

func (u Undoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	out, note, err := managedfile.Undoer{}.Undo(ctx, e)
	if err != nil || out != step.Restored {
		return out, note, err
	}
	if !u.Apache.Installed() {
		return out, note, nil // Apache is gone: nothing to reload
	}
	return out, note, u.Apache.Reload(ctx)
}

func (u Undoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	return managedfile.Undoer{}.Holds(ctx, e)
}
