package tunnel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// fakeSystemctl stands in for systemctl where systemd is not PID 1 (this test machine,
// chroots): it records its calls and answers `show` from a file that restart and stop
// rewrite, with the monotonic clock the test wrote to mono (systemd's clock for
// ExecMainStartTimestampMonotonic).
const fakeSystemctl = `#!/bin/sh
d=$(dirname "$0")
echo "$*" >>"$d/calls"
now=$(cat "$d/mono")
case "$1" in
show) cat "$d/show" ;;
restart) printf 'LoadState=loaded\nActiveState=active\nSubState=running\nNeedDaemonReload=no\nNRestarts=0\nExecMainStartTimestampMonotonic=%s\nActiveEnterTimestampMonotonic=%s\n' "$now" "$now" >"$d/show" ;;
stop) printf 'LoadState=loaded\nActiveState=inactive\nSubState=dead\nNeedDaemonReload=no\nNRestarts=0\nExecMainStartTimestampMonotonic=0\nActiveEnterTimestampMonotonic=0\n' >"$d/show" ;;
esac
`

func TestServiceUnderSystemd(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	must(t, os.MkdirAll(bin, 0o755))
	must(t, os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fakeSystemctl), 0o755))
	show := func(s string) { must(t, os.WriteFile(filepath.Join(bin, "show"), []byte(s), 0o644)) }
	calls := func() string {
		b, _ := os.ReadFile(filepath.Join(bin, "calls"))
		os.Remove(filepath.Join(bin, "calls"))
		return strings.TrimSpace(string(b))
	}
	systemd := true
	env := testEnv(dir, "emrkit-tunnel")
	env.Systemctl = filepath.Join(bin, "systemctl")
	env.SystemdRunning = func() bool { return systemd }
	for _, p := range []string{env.UnitPath(), env.SSHConfigPath(), env.KnownHostsPath(), env.KeyPath()} {
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte("x"), 0o644))
	}
	ctx := context.Background()

	// Enable: the symlink, then daemon-reload; undo removes both the link and the .wants
	// directory it made, and reloads.
	en := EnableStep{Env: env, SinceVersion: Since}
	d, b, err := en.Capture(ctx)
	must(t, err)
	must(t, en.Apply(ctx, d))
	if ok, err := en.Check(ctx); !ok || err != nil || calls() != "daemon-reload" {
		t.Errorf("enable: %v %v", ok, err)
	}
	e := journal.Entry{ID: en.ID(), Kind: en.Kind(), State: journal.Done, Desired: d, Before: b}
	if o, _, err := (EnableUndoer{Env: env}).Undo(ctx, e); o != step.Restored || err != nil || calls() != "daemon-reload" {
		t.Errorf("disable: %v %v", o, err)
	}
	if _, err := os.Stat(filepath.Dir(env.WantsLink())); !os.IsNotExist(err) {
		t.Errorf("the .wants directory emrkit made survived: %v", err)
	}
	must(t, en.Apply(ctx, d))
	calls()

	st := StartStep{Env: env, SinceVersion: Since}
	show("LoadState=loaded\nActiveState=inactive\nSubState=dead\nNeedDaemonReload=no\nExecMainStartTimestampMonotonic=0\n")
	if ok, err := st.Check(ctx); ok || err != nil {
		t.Errorf("inactive unit in sync: %v %v", ok, err)
	}
	d, b, err = st.Capture(ctx)
	must(t, err)
	calls()
	// Files written before the start are what ssh runs with.
	old := time.Now().Add(-time.Minute)
	for _, p := range []string{env.UnitPath(), env.SSHConfigPath(), env.KnownHostsPath(), env.KeyPath()} {
		must(t, os.Chtimes(p, old, old))
	}
	var ts unix.Timespec
	must(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	now := ts.Nano() / 1000
	must(t, os.WriteFile(filepath.Join(bin, "mono"), []byte(fmt.Sprint(now)), 0o644))
	must(t, st.Apply(ctx, d))
	if got := calls(); got != "daemon-reload\nrestart "+UnitName {
		t.Errorf("start ran %q", got)
	}
	if ok, err := st.Check(ctx); !ok || err != nil {
		t.Errorf("started unit not in sync: %v %v", ok, err)
	}
	// The configuration changed after ssh started: restart.
	must(t, os.Chtimes(env.SSHConfigPath(), time.Now().Add(time.Second), time.Now().Add(time.Second)))
	if ok, err := st.Check(ctx); ok || err != nil {
		t.Errorf("changed configuration in sync: %v %v", ok, err)
	}
	must(t, os.Chtimes(env.SSHConfigPath(), old, old))
	// A tunnel waiting to reconnect is started; a unit file not reloaded is not in sync.
	show(fmt.Sprintf("ActiveState=activating\nSubState=auto-restart\nNeedDaemonReload=no\nExecMainStartTimestampMonotonic=%d\n", now))
	if ok, err := st.Check(ctx); !ok || err != nil {
		t.Errorf("auto-restart not in sync: %v %v", ok, err)
	}
	show(fmt.Sprintf("ActiveState=active\nSubState=running\nNeedDaemonReload=yes\nExecMainStartTimestampMonotonic=%d\n", now))
	if ok, err := st.Check(ctx); ok || err != nil {
		t.Errorf("unit needing daemon-reload in sync: %v %v", ok, err)
	}

	// Status reads systemd.
	show(fmt.Sprintf("LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=2\nActiveEnterTimestampMonotonic=%d\n", now-5_000_000))
	s, err := Status(ctx, env)
	since, perr := time.Parse(time.RFC3339, s.Since)
	if err != nil || !s.Up || !s.Enabled || s.Restarts != 2 || perr != nil || time.Since(since) < 4*time.Second || time.Since(since) > 7*time.Second {
		t.Errorf("status: %+v %v", s, err)
	}
	show("LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nNRestarts=7\nActiveEnterTimestampMonotonic=0\n")
	if s, err := Status(ctx, env); err != nil || s.Up || !strings.Contains(s.Detail, "activating (auto-restart), 7 restarts: `journalctl -u "+UnitName+"`") {
		t.Errorf("status of a restarting tunnel: %+v %v", s, err)
	}
	calls()

	// Undo stops it; stopped already is as before; without systemd there is nothing to stop.
	e = journal.Entry{ID: st.ID(), Kind: st.Kind(), State: journal.Done, Desired: d, Before: b}
	show("ActiveState=active\n")
	if o, _, err := (StartUndoer{Env: env}).Undo(ctx, e); o != step.Restored || err != nil || !strings.HasSuffix(calls(), "stop "+UnitName) {
		t.Errorf("stop: %v %v", o, err)
	}
	if o, _, err := (StartUndoer{Env: env}).Undo(ctx, e); o != step.AlreadyBefore || err != nil {
		t.Errorf("stop again: %v %v", o, err)
	}
	calls()
	systemd = false
	if o, detail, err := (StartUndoer{Env: env}).Undo(ctx, e); o != step.Skipped || err != nil || !strings.Contains(detail, "systemd is not running") {
		t.Errorf("stop without systemd: %v %q %v", o, detail, err)
	}
	_, err = st.Check(ctx)
	if d, ok := step.IsDeferred(err); !ok || !strings.Contains(d.Reason, "starts at boot") {
		t.Errorf("start without systemd: %v", err)
	}
	must(t, os.Remove(env.WantsLink()))
	_, err = st.Check(ctx)
	if d, ok := step.IsDeferred(err); !ok || !strings.Contains(d.Reason, "emrkit apply") {
		t.Errorf("start without systemd, not enabled: %v", err)
	}
	if calls() != "" {
		t.Error("systemctl ran without systemd")
	}
}
