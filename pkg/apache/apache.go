// Package apache owns emrkit's configuration of Debian's Apache: conf snippets in
// conf-available, enabled with a2enconf (journal kind "apache.conf"), and the modules they
// need (apache.mod). With each change the whole configuration must pass `apache2ctl
// configtest`: a failing test puts everything back and changes nothing. A running Apache is
// reloaded gracefully (no request is cut) once per run, after all of them (Env.Activation);
// a stopped one reads them when it starts. Undo disables the snippet, removes it (only while it still holds emrkit's content)
// and reloads. The snippet is enabled and disabled in a2enconf's maintainer mode (-m, and -p
// on disable), which leaves no trace in /var/lib/apache2 after undo and respects an admin
// who disabled it on purpose.
package apache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// Kind is the journal kind of a conf snippet.
const Kind = "apache.conf"

// Env is Debian's Apache as the steps see it; tests point it at a private copy.
type Env struct {
	// Dir is the configuration directory (/etc/apache2), with conf-available and conf-enabled.
	Dir string
	// StateDir is a2enconf's record of who enabled what (/var/lib/apache2).
	StateDir string
	// Ctl, EnConf, DisConf, EnMod and DisMod are apache2ctl, a2enconf, a2disconf, a2enmod
	// and a2dismod.
	Ctl, EnConf, DisConf, EnMod, DisMod string
	// PIDFile tells whether Apache runs (Debian's envvars: /var/run/apache2/apache2.pid).
	PIDFile string
}

// DefaultEnv is Debian's Apache.
func DefaultEnv() Env {
	return Env{Dir: "/etc/apache2", StateDir: "/var/lib/apache2", Ctl: "/usr/sbin/apache2ctl",
		EnConf: "/usr/sbin/a2enconf", DisConf: "/usr/sbin/a2disconf", EnMod: "/usr/sbin/a2enmod", DisMod: "/usr/sbin/a2dismod",
		PIDFile: "/var/run/apache2/apache2.pid"}
}

// unit is what a2enconf and a2enmod manage: a conf (conf-available/NAME.conf) or a module
// (mods-available/NAME.load), with its tools and a2en*'s record directory.
type unit struct{ dir, ext, state, en, dis string }

func (e Env) conf() unit { return unit{"conf", ".conf", "conf", e.EnConf, e.DisConf} }
func (e Env) mod() unit  { return unit{"mods", ".load", "module", e.EnMod, e.DisMod} }

func (e Env) availablePath(u unit, name string) string {
	return filepath.Join(e.Dir, u.dir+"-available", name+u.ext)
}
func (e Env) enabledPath(u unit, name string) string {
	return filepath.Join(e.Dir, u.dir+"-enabled", name+u.ext)
}
func (e Env) available(name string) string { return e.availablePath(e.conf(), name) }

// Installed reports whether Apache is on the host.
func (e Env) Installed() bool {
	_, err := os.Stat(e.Ctl)
	return err == nil
}

// run runs one of Apache's tools with a fixed environment and returns its combined output.
func (e Env) run(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"LC_ALL=C", "LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	msg := strings.Join(strings.Fields(string(out)), " ")
	if err != nil {
		return msg, fmt.Errorf("%s %s: %v: %s", filepath.Base(argv[0]), strings.Join(argv[1:], " "), err, msg)
	}
	return msg, nil
}

// ConfigTest runs `apache2ctl configtest`.
func (e Env) ConfigTest(ctx context.Context) error {
	_, err := e.run(ctx, e.Ctl, "configtest")
	return err
}

// test checks Apache's configuration with a change just made, once. When the test fails,
// rollback puts the change back and a second test says whose the fault is: a configuration
// that fails without the change was broken by someone else, and gets nothing of emrkit's
// added to it. Apache takes the change at Activation.
func (e Env) test(ctx context.Context, change string, rollback func()) error {
	err := e.ConfigTest(ctx)
	if err == nil {
		return nil
	}
	rollback()
	if before := e.ConfigTest(ctx); before != nil {
		return fmt.Errorf("Apache's configuration fails its test even without emrkit's change (%v); fix it first: emrkit left it as it was", before)
	}
	return fmt.Errorf("with %s, %w; nothing was changed", change, err)
}

// Activation is one graceful reload for every change a run made to this Apache (each
// tested on its own already): a reload per change would parse the configuration twice each.
func (e Env) Activation() step.Activation {
	return step.Activation{Key: "apache2 " + e.Dir, What: "Apache: graceful reload", Activate: e.Reload}
}

// Running reports whether the Apache of PIDFile runs.
func (e Env) Running() bool {
	data, err := fsutil.ReadFile(e.PIDFile, fsutil.TextLimit)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// Reload makes a running Apache read its configuration again, gracefully: apache2ctl tests
// the configuration first and leaves Apache as it is when the test fails.
func (e Env) Reload(ctx context.Context) error {
	if !e.Running() {
		return nil
	}
	_, err := e.run(ctx, e.Ctl, "graceful")
	return err
}

func (e Env) isEnabled(u unit, name string) bool {
	target, err := filepath.EvalSymlinks(e.enabledPath(u, name))
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(e.availablePath(u, name))
	return err == nil && target == want
}

func (e Env) enable(ctx context.Context, u unit, name string) error {
	tool := filepath.Base(u.en)
	if _, err := e.run(ctx, u.en, "-m", "-q", name); err != nil {
		return err
	}
	if !e.isEnabled(u, name) {
		if _, err := os.Stat(filepath.Join(e.StateDir, u.state, "disabled_by_admin", name)); err == nil {
			return fmt.Errorf("an admin disabled %s with %s, and emrkit does not override that: "+
				"`%s %s` to have it, or set firewall and openemr options so it is not needed", name, filepath.Base(u.dis), tool, name)
		}
		return fmt.Errorf("%s did not enable %s", tool, name)
	}
	return nil
}

func (e Env) disable(ctx context.Context, u unit, name string) error {
	if _, err := e.run(ctx, u.dis, "-m", "-p", "-q", name); err != nil {
		return err
	}
	// a2dis* -p leaves its empty record directory behind; a2en* makes it again.
	os.Remove(filepath.Join(e.StateDir, u.state, "disabled_by_maint"))
	return nil
}

// desired holds the snippet itself (a page of directives, no secret): a run resumed after a
// crash writes exactly what was journaled, and undo compares against it.
type desired struct {
	Name    string `json:"name"`
	Content []byte `json:"content"`
}

type before struct {
	Present bool   `json:"present"`
	Content []byte `json:"content,omitempty"`
	Enabled bool   `json:"enabled,omitempty"`
}

// ConfStep makes conf-available/Name.conf hold Content, enabled.
type ConfStep struct {
	Env          Env
	Name         string
	Content      []byte
	What         string
	SinceVersion string
}

func (s ConfStep) Kind() string     { return Kind }
func (s ConfStep) Target() string   { return s.Env.available(s.Name) }
func (s ConfStep) ID() string       { return Kind + ":" + s.Name }
func (s ConfStep) Since() string    { return s.SinceVersion }
func (s ConfStep) Describe() string { return fmt.Sprintf("Apache: %s (%s)", s.Target(), s.What) }

// Preflight defers the step while Apache is not installed.
func (s ConfStep) Preflight(context.Context) error {
	if !s.Env.Installed() {
		return &step.DeferredError{Reason: "Apache is not installed (no " + s.Env.Ctl + "); run `emrkit apply` once it is"}
	}
	return nil
}

func (s ConfStep) Check(ctx context.Context) (bool, error) {
	if err := s.Preflight(ctx); err != nil {
		return false, err
	}
	cur, err := fsutil.ReadFile(s.Target(), fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, s.Content) && s.Env.isEnabled(s.Env.conf(), s.Name), nil
}

func (s ConfStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	var b before
	cur, err := fsutil.ReadFile(s.Target(), fsutil.TextLimit)
	switch {
	case err == nil:
		b = before{Present: true, Content: cur, Enabled: s.Env.isEnabled(s.Env.conf(), s.Name)}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, err
	}
	d, err := json.Marshal(desired{Name: s.Name, Content: s.Content})
	if err != nil {
		return nil, nil, err
	}
	bb, err := json.Marshal(b)
	return d, bb, err
}

// Apply writes and enables the snippet; when Apache's configuration test fails with it, what
// was there before is put back.
func (s ConfStep) Apply(ctx context.Context, raw json.RawMessage) error {
	var d desired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("%s: desired state: %w", s.ID(), err)
	}
	prev, readErr := fsutil.ReadFile(s.Target(), fsutil.TextLimit)
	wasEnabled := s.Env.isEnabled(s.Env.conf(), d.Name)
	rollback := func() {
		if !wasEnabled {
			s.Env.disable(ctx, s.Env.conf(), d.Name)
		}
		if readErr == nil {
			fsutil.WriteAtomic(s.Target(), prev, 0o644, nil)
		} else {
			os.Remove(s.Target())
		}
	}
	if err := fsutil.WriteAtomic(s.Env.available(d.Name), d.Content, 0o644, nil); err != nil {
		return err
	}
	if err := s.Env.enable(ctx, s.Env.conf(), d.Name); err != nil {
		rollback()
		return fmt.Errorf("%v; nothing was changed", err)
	}
	return s.Env.test(ctx, "emrkit's "+s.Target(), rollback)
}

// Activation has a running Apache take the snippet.
func (s ConfStep) Activation() step.Activation { return s.Env.Activation() }

// Undoer disables and removes the snippet while it still holds emrkit's content.
type Undoer struct{ Env Env }

func (u Undoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[desired, before](e)
	if err != nil {
		return 0, "", err
	}
	if !u.Env.Installed() {
		return step.Skipped, "Apache is no longer installed", nil
	}
	path := u.Env.available(d.Name)
	cur, err := fsutil.ReadFile(path, fsutil.TextLimit)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !b.Present:
		return step.AlreadyBefore, "", nil
	case errors.Is(err, fs.ErrNotExist):
		return step.Kept, path + " was removed since; the file emrkit replaced is not put back", nil
	case err != nil:
		return 0, "", err
	case !bytes.Equal(cur, d.Content):
		return step.Kept, path + " was edited since emrkit wrote it", nil
	}
	if u.Env.isEnabled(u.Env.conf(), d.Name) && !b.Enabled {
		if err := u.Env.disable(ctx, u.Env.conf(), d.Name); err != nil {
			return 0, "", err
		}
	}
	if b.Present {
		err = fsutil.WriteAtomic(path, b.Content, 0o644, nil)
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		return 0, "", err
	}
	if err := u.Env.ConfigTest(ctx); err != nil {
		return step.Restored, fmt.Sprintf("not reloaded: Apache's configuration fails its test without emrkit's snippet (%v)", err), nil
	}
	return step.Restored, "", u.Env.Reload(ctx)
}

func (u Undoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[desired, before](e)
	if err != nil {
		return false, err
	}
	cur, err := fsutil.ReadFile(u.Env.available(d.Name), fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, d.Content) && u.Env.isEnabled(u.Env.conf(), d.Name), nil
}
