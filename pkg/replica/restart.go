package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// RestartSince is the release that may restart MariaDB for the binary log.
const RestartSince = "0.8.1"

// PrimaryUnit is the clinic's MariaDB, as Debian's mariadb-server names it.
const PrimaryUnit = "mariadb.service"

// RestartHint is the single next step while MariaDB has yet to start its binary log.
const RestartHint = "run `emrkit apply --restart-mariadb` (restarts MariaDB now, a few seconds in which OpenEMR cannot reach it), " +
	"or restart MariaDB yourself (systemctl restart mariadb) and run `emrkit apply`"

// primaryRestartStep restarts the clinic's MariaDB once, when its binary-log drop-in is in
// place and the running server still has no ROW binary log, and only when the admin allowed
// it for this run (Env.RestartPrimary: `emrkit apply --restart-mariadb`, or debconf's
// emrkit/portal-replica-restart for the package's own runs). The moment is the run's: after
// the drop-in, before the portal replica's steps, so one run converges.
type primaryRestartStep struct {
	primary *mariadb.Shared
	env     Env
}

type restartDesired struct {
	Unit string `json:"unit"`
}

type restartBefore struct {
	LogBin bool   `json:"log_bin"`
	Format string `json:"binlog_format"`
}

func (s primaryRestartStep) Kind() string   { return PrimaryRestartKind }
func (s primaryRestartStep) Target() string { return PrimaryUnit }
func (s primaryRestartStep) ID() string     { return PrimaryRestartKind + ":" + PrimaryUnit }
func (s primaryRestartStep) Since() string  { return RestartSince }
func (s primaryRestartStep) Describe() string {
	return "restart MariaDB once to start the binary log the portal replica reads"
}

func (s primaryRestartStep) Check(ctx context.Context) (bool, error) {
	st, err := readShared(ctx, s.primary)
	if err != nil || !st.binlogNeeded {
		return err == nil, err
	}
	if !s.env.RestartPrimary {
		return false, &step.DeferredError{Reason: "MariaDB has yet to start the binary log the portal replica needs: " + RestartHint}
	}
	if !s.env.SystemdRunning() {
		return false, &step.DeferredError{Reason: "systemd is not running, so emrkit cannot restart MariaDB for the portal replica's binary log: restart it yourself, then run `emrkit apply`"}
	}
	return false, nil
}

func (s primaryRestartStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	st, err := readShared(ctx, s.primary)
	if err != nil {
		return nil, nil, err
	}
	d, err := json.Marshal(restartDesired{Unit: PrimaryUnit})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(restartBefore{LogBin: st.logBin, Format: st.format})
	return d, b, err
}

// Apply restarts MariaDB and waits for it. A MariaDB that does not come back with the
// drop-in gets it taken away (emrkit's own content only) and is started again: the clinic's
// database is never left down for the portal.
func (s primaryRestartStep) Apply(ctx context.Context, _ json.RawMessage) error {
	if _, err := systemctl(ctx, true, "restart", PrimaryUnit); err != nil {
		return s.recover(ctx, err)
	}
	st, err := s.waitPrimary(ctx)
	if err != nil {
		return s.recover(ctx, err)
	}
	if st.binlogNeeded {
		return fmt.Errorf("MariaDB restarted but writes no ROW binary log: an option file read after %s overrides it (see `mariadbd --print-defaults`)", s.env.PrimaryDropIn)
	}
	return nil
}

// waitPrimary reads the restarted server's state, retrying while it comes up.
func (s primaryRestartStep) waitPrimary(ctx context.Context) (primaryState, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := readShared(ctx, s.primary)
		if err == nil || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s primaryRestartStep) recover(ctx context.Context, cause error) error {
	cur, err := fsutil.ReadFile(s.env.PrimaryDropIn, fsutil.TextLimit)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("MariaDB did not come back after its restart (%v), and %s cannot be read: %v; see journalctl -u mariadb", cause, s.env.PrimaryDropIn, err)
	}
	if err == nil && ownDropIn(cur) {
		if err := os.Remove(s.env.PrimaryDropIn); err != nil {
			return fmt.Errorf("MariaDB did not come back after its restart (%v); remove %s and run systemctl start mariadb: %v", cause, s.env.PrimaryDropIn, err)
		}
	}
	if _, err := systemctl(ctx, true, "restart", PrimaryUnit); err != nil {
		return fmt.Errorf("MariaDB did not come back after its restart (%v), nor without emrkit's drop-in (%v): see journalctl -u mariadb", cause, err)
	}
	return fmt.Errorf("MariaDB did not come back with the portal replica's binary log (%v); emrkit took its drop-in %s away and MariaDB runs again without it: see journalctl -u mariadb", cause, s.env.PrimaryDropIn)
}

// primaryRestartUndoer: a restart leaves nothing to put back. A MariaDB whose drop-in is
// undone writes its binary log until its next restart.
type primaryRestartUndoer struct{ primary *mariadb.Shared }

func (primaryRestartUndoer) Undo(context.Context, journal.Entry) (step.Outcome, string, error) {
	return step.AlreadyBefore, "a restart is not undone; MariaDB stops its binary log at its next restart", nil
}

func (u primaryRestartUndoer) Holds(ctx context.Context, _ journal.Entry) (bool, error) {
	st, err := readShared(ctx, u.primary)
	return err == nil && !st.binlogNeeded, err
}
