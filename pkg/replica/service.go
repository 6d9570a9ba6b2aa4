package replica

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/step"
)

// lookTool finds a program, also in the sbin directories a non-root PATH lacks; missing, it
// is an error naming the Debian package that has it.
func lookTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found; install %s (apt install %s)", name, pkg, pkg)
}

// systemctl runs systemctl with args and returns its trimmed stdout; a non-zero exit is an
// error only when check is set (is-enabled and is-active exit non-zero to answer "no").
func systemctl(ctx context.Context, check bool, args ...string) (string, error) {
	path, err := lookTool("systemctl", "systemd")
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if _, exit := err.(*exec.ExitError); err != nil && (check || !exit) {
		return "", fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func notBooted() error {
	return &step.DeferredError{Reason: "systemd is not running (a chroot or an image build): the portal replica starts when `emrkit apply` runs under systemd"}
}

type serviceDesired struct {
	Unit string `json:"unit"`
}

type serviceBefore struct {
	Enabled bool `json:"enabled"`
	Active  bool `json:"active"`
}

func unitState(ctx context.Context, unit string) (serviceBefore, error) {
	en, err := systemctl(ctx, false, "is-enabled", unit)
	if err != nil {
		return serviceBefore{}, err
	}
	act, err := systemctl(ctx, false, "is-active", unit)
	if err != nil {
		return serviceBefore{}, err
	}
	return serviceBefore{Enabled: en == "enabled", Active: act == "active"}, nil
}

// serviceStep enables and starts the intermediate's unit.
type serviceStep struct {
	env     Env
	since   string
	restart *restart
}

func (s serviceStep) Kind() string   { return ServiceKind }
func (s serviceStep) Target() string { return ServiceName }
func (s serviceStep) ID() string     { return ServiceKind + ":" + ServiceName }
func (s serviceStep) Since() string  { return s.since }
func (s serviceStep) Describe() string {
	return "portal replica service " + ServiceName + " enabled and running"
}

func (s serviceStep) Check(ctx context.Context) (bool, error) {
	if !s.env.SystemdRunning() {
		return false, notBooted()
	}
	st, err := unitState(ctx, ServiceName)
	return st.Enabled && st.Active, err
}

func (s serviceStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	st, err := unitState(ctx, ServiceName)
	if err != nil {
		return nil, nil, err
	}
	dj, err := json.Marshal(serviceDesired{Unit: ServiceName})
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(st)
	return dj, bj, err
}

func (s serviceStep) Apply(ctx context.Context, _ json.RawMessage) error {
	if _, err := systemctl(ctx, true, "daemon-reload"); err != nil {
		return err
	}
	if _, err := systemctl(ctx, true, "enable", "--now", ServiceName); err != nil {
		return fmt.Errorf("%w (see journalctl -u %s)", err, ServiceName)
	}
	s.restart.started = true
	return nil
}

// restart is how a running intermediate takes a changed unit or option file: one
// daemon-reload and try-restart per run, after the run's steps. A run that started the
// service itself (after writing both files, with a daemon-reload) skips it: the server it
// just started already reads them. One restart is shared by a run's steps (Steps makes it).
type restart struct {
	systemdRunning func() bool
	started        bool
}

func (r *restart) activation() step.Activation {
	return step.Activation{Key: ServiceName, What: "portal replica: daemon-reload, restart if running", Activate: r.activate}
}

func (r *restart) activate(ctx context.Context) error {
	if r.started || !r.systemdRunning() {
		return nil // not booted: the service step defers, and starts it later with both files
	}
	if _, err := systemctl(ctx, true, "daemon-reload"); err != nil {
		return err
	}
	if _, err := systemctl(ctx, true, "try-restart", ServiceName); err != nil {
		return fmt.Errorf("%w (see journalctl -u %s)", err, ServiceName)
	}
	return nil
}

type serviceUndoer struct{ systemdRunning func() bool }

func (u serviceUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[serviceDesired, serviceBefore](e)
	if err != nil {
		return 0, "", err
	}
	if d.Unit != ServiceName {
		return 0, "", fmt.Errorf("journal entry %s: unit %q is not emrkit's", e.ID, d.Unit)
	}
	if !u.systemdRunning() {
		return step.Skipped, "systemd is not running", nil
	}
	st, err := unitState(ctx, d.Unit)
	if err != nil {
		return 0, "", err
	}
	if st == b || (!st.Enabled && !st.Active) {
		return step.AlreadyBefore, "", nil
	}
	switch {
	case !b.Enabled && !b.Active:
		_, err = systemctl(ctx, true, "disable", "--now", d.Unit)
	case !b.Enabled:
		_, err = systemctl(ctx, true, "disable", d.Unit)
	case !b.Active:
		_, err = systemctl(ctx, true, "stop", d.Unit)
	}
	if err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

func (u serviceUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	if !u.systemdRunning() {
		return false, nil
	}
	st, err := unitState(ctx, ServiceName)
	return st.Enabled && st.Active, err
}

// unitStep is the unit file: a managed file of its own kind, so its undo can tell systemd.
// A running intermediate takes a changed one at the run's restart.
type unitStep struct {
	managedfile.Step
	restart *restart
}

func (s unitStep) Kind() string                { return UnitKind }
func (s unitStep) ID() string                  { return UnitKind + ":" + s.Path }
func (s unitStep) Activation() step.Activation { return s.restart.activation() }

// configStep is the intermediate's option file; a running intermediate takes a changed one
// at the run's restart.
type configStep struct {
	managedfile.Step
	restart *restart
}

func (s configStep) Activation() step.Activation { return s.restart.activation() }

type unitUndoer struct{ systemdRunning func() bool }

func (u unitUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	o, detail, err := managedfile.Undoer{}.Undo(ctx, e)
	if err == nil && o == step.Restored && u.systemdRunning() {
		if _, rerr := systemctl(ctx, true, "daemon-reload"); rerr != nil {
			detail = "run systemctl daemon-reload: " + rerr.Error()
		}
	}
	return o, detail, err
}

func (u unitUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	return managedfile.Undoer{}.Holds(ctx, e)
}
