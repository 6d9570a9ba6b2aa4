package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

type enableDesired struct {
	Link   string `json:"link"`
	Target string `json:"target"`
}

type enableBefore struct {
	Present bool   `json:"present"`
	Target  string `json:"target,omitempty"` // what the link pointed to
	// WantsDirExisted: multi-user.target.wants was there before; undo leaves it.
	WantsDirExisted bool `json:"wants_dir_existed"`
}

// EnableStep enables the unit: the multi-user.target.wants symlink `systemctl enable` makes,
// made directly so it works where systemd does not run (a chroot, an image build) and the
// tunnel starts at the next boot. Under systemd, daemon-reload follows.
type EnableStep struct {
	Env          Env
	SinceVersion string
}

func (s EnableStep) Kind() string     { return EnableKind }
func (s EnableStep) Target() string   { return s.Env.WantsLink() }
func (s EnableStep) ID() string       { return EnableKind + ":" + s.Env.WantsLink() }
func (s EnableStep) Since() string    { return s.SinceVersion }
func (s EnableStep) Describe() string { return "enable " + UnitName }

// Preflight defers the step where there is no unit directory: systemd is not installed.
func (s EnableStep) Preflight(context.Context) error {
	if fi, err := os.Stat(s.Env.UnitDir); err != nil || !fi.IsDir() {
		return &step.DeferredError{Reason: s.Env.UnitDir + " does not exist (is systemd installed?)"}
	}
	return nil
}

func (s EnableStep) Check(ctx context.Context) (bool, error) {
	if err := s.Preflight(ctx); err != nil {
		return false, err
	}
	target, err := os.Readlink(s.Env.WantsLink())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		if errors.Is(err, syscall.EINVAL) {
			return false, fmt.Errorf("%s is not a symlink; remove it (systemctl enable makes a symlink there)", s.Env.WantsLink())
		}
		return false, err
	}
	return target == s.Env.UnitPath(), nil
}

func (s EnableStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	b := enableBefore{}
	link := s.Env.WantsLink()
	if target, err := os.Readlink(link); err == nil {
		b.Present, b.Target = true, target
	} else if _, lerr := os.Lstat(link); lerr == nil {
		return nil, nil, fmt.Errorf("%s is not a symlink; remove it (systemctl enable makes a symlink there)", link)
	}
	if fi, err := os.Stat(filepath.Dir(link)); err == nil && fi.IsDir() {
		b.WantsDirExisted = true
	}
	d, err := json.Marshal(enableDesired{Link: link, Target: s.Env.UnitPath()})
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return d, bj, err
}

func (s EnableStep) Apply(ctx context.Context, desired json.RawMessage) error {
	var d enableDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return fmt.Errorf("enable %s: desired state: %w", UnitName, err)
	}
	if err := os.MkdirAll(filepath.Dir(d.Link), 0o755); err != nil {
		return fmt.Errorf("enable %s: %w", UnitName, err)
	}
	if err := symlinkAtomic(d.Target, d.Link); err != nil {
		return fmt.Errorf("enable %s: %w", UnitName, err)
	}
	return daemonReload(ctx, s.Env)
}

// symlinkAtomic makes link point to target, replacing what is there in one rename.
func symlinkAtomic(target, link string) error {
	tmp := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".tmp-emrkit")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return fsutil.SyncDir(filepath.Dir(link))
}

// daemonReload makes a running systemd read the unit files again.
func daemonReload(ctx context.Context, env Env) error {
	if !env.systemdRunning() {
		return nil
	}
	_, err := run(ctx, nil, env.systemctl(), "daemon-reload")
	return err
}

// EnableUndoer removes the enablement while it is emrkit's.
type EnableUndoer struct{ Env Env }

func (u EnableUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[enableDesired, enableBefore](e)
	if err != nil {
		return 0, "", err
	}
	target, err := os.Readlink(d.Link)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !b.Present:
		return step.AlreadyBefore, "", u.removeWantsDir(d, b)
	case errors.Is(err, fs.ErrNotExist):
		return step.Kept, d.Link + " was removed since (the unit was disabled)", nil
	case err != nil || target != d.Target:
		return step.Kept, d.Link + " was changed since emrkit enabled the unit", nil
	}
	if b.Present {
		err = symlinkAtomic(b.Target, d.Link)
	} else {
		err = os.Remove(d.Link)
	}
	if err != nil {
		return 0, "", fmt.Errorf("disable %s: %w", UnitName, err)
	}
	if err := u.removeWantsDir(d, b); err != nil {
		return 0, "", err
	}
	if !u.Env.systemdRunning() {
		return step.Restored, "", nil
	}
	return step.Restored, "", daemonReload(ctx, u.Env)
}

// removeWantsDir removes the .wants directory emrkit made, while it is empty.
func (u EnableUndoer) removeWantsDir(d enableDesired, b enableBefore) error {
	if b.WantsDirExisted {
		return nil
	}
	dir := filepath.Dir(d.Link)
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

func (u EnableUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[enableDesired, enableBefore](e)
	if err != nil {
		return false, err
	}
	target, err := os.Readlink(d.Link)
	return err == nil && target == d.Target, nil
}

type startDesired struct {
	Unit string `json:"unit"`
}

type startBefore struct {
	Active bool `json:"active"`
}

// StartStep starts the unit under systemd, and restarts it when its unit file, ssh
// configuration, pinned key or key changed since ssh started. Without systemd it defers:
// the enabled unit starts at boot.
type StartStep struct {
	Env          Env
	SinceVersion string
}

func (s StartStep) Kind() string     { return StartKind }
func (s StartStep) Target() string   { return UnitName }
func (s StartStep) ID() string       { return StartKind + ":" + UnitName }
func (s StartStep) Since() string    { return s.SinceVersion }
func (s StartStep) Describe() string { return "start " + UnitName }

// notRunning is why the start waits when systemd is not running.
func (s StartStep) notRunning() error {
	why := "systemd is not running (a chroot or an image build): the portal tunnel starts at boot"
	if _, err := os.Lstat(s.Env.WantsLink()); err != nil {
		why = "systemd is not running (a chroot or an image build): the portal tunnel starts when `emrkit apply` runs under systemd"
	}
	return &step.DeferredError{Reason: why}
}

func (s StartStep) Check(ctx context.Context) (bool, error) {
	if !s.Env.systemdRunning() {
		return false, s.notRunning()
	}
	for _, p := range []string{s.Env.UnitPath(), s.Env.SSHConfigPath(), s.Env.KnownHostsPath()} {
		if _, err := os.Stat(p); err != nil {
			return false, &step.DeferredError{Reason: p + " is not there yet"}
		}
	}
	u, err := showUnit(ctx, s.Env, "ActiveState", "NeedDaemonReload", "ExecMainStartTimestampMonotonic")
	if err != nil {
		return false, err
	}
	if !started(u["ActiveState"]) || u["NeedDaemonReload"] == "yes" {
		return false, nil
	}
	since, ok := monotonicToTime(u["ExecMainStartTimestampMonotonic"])
	if !ok {
		return false, nil
	}
	// ssh reads its files when it starts: one changed since is not in use yet.
	for _, p := range []string{s.Env.UnitPath(), s.Env.SSHConfigPath(), s.Env.KnownHostsPath(), s.Env.KeyPath()} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(since) {
			return false, nil
		}
	}
	return true, nil
}

func (s StartStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	b := startBefore{}
	if s.Env.systemdRunning() {
		u, err := showUnit(ctx, s.Env, "ActiveState")
		if err != nil {
			return nil, nil, err
		}
		b.Active = started(u["ActiveState"])
	}
	d, err := json.Marshal(startDesired{Unit: UnitName})
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return d, bj, err
}

// Apply (re)starts the unit with what is on disk now.
func (s StartStep) Apply(ctx context.Context, _ json.RawMessage) error {
	if !s.Env.systemdRunning() {
		return s.notRunning()
	}
	if err := daemonReload(ctx, s.Env); err != nil {
		return err
	}
	_, err := run(ctx, nil, s.Env.systemctl(), "restart", UnitName)
	return err
}

// started: the unit runs ssh, or waits to run it again (Restart=always keeps a tunnel whose
// portal host is away in activating/auto-restart).
func started(activeState string) bool {
	return activeState == "active" || activeState == "activating" || activeState == "reloading"
}

// StartUndoer stops the unit emrkit started.
type StartUndoer struct{ Env Env }

func (u StartUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	if !u.Env.systemdRunning() {
		return step.Skipped, "systemd is not running; there is no running tunnel to stop", nil
	}
	s, err := showUnit(ctx, u.Env, "ActiveState")
	if err != nil {
		return 0, "", err
	}
	if !started(s["ActiveState"]) {
		return step.AlreadyBefore, "", nil
	}
	if _, err := run(ctx, nil, u.Env.systemctl(), "stop", UnitName); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

func (u StartUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	if !u.Env.systemdRunning() {
		return false, nil
	}
	s, err := showUnit(ctx, u.Env, "ActiveState")
	if err != nil {
		return false, err
	}
	return started(s["ActiveState"]), nil
}

// showUnit reads properties of the unit (systemctl show, one "Name=value" per line).
func showUnit(ctx context.Context, env Env, props ...string) (map[string]string, error) {
	argv := []string{env.systemctl(), "show", UnitName}
	for _, p := range props {
		argv = append(argv, "-p", p)
	}
	r, err := run(ctx, nil, argv...)
	if err != nil {
		return nil, err
	}
	return parseShow(r.stdout), nil
}

// parseShow parses systemctl show's "Name=value" lines.
func parseShow(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// monotonicToTime turns a CLOCK_MONOTONIC timestamp in microseconds (systemd's *Monotonic
// properties) into wall-clock time; 0 means never.
func monotonicToTime(usec string) (time.Time, bool) {
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Time{}, false
	}
	now := time.Now()
	ago := time.Duration(ts.Nano()) - time.Duration(n)*time.Microsecond
	return now.Add(-ago), true
}
