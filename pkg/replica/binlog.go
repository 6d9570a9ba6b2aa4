package replica

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/managedfile"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/step"
)

// Journal kinds.
const (
	BinlogKind         = "portal-replica.binlog"
	SourceAccountKind  = "portal-replica.source-account"
	OffsiteAccountKind = "portal-replica.offsite-account"
	UnitKind           = "portal-replica.unit"
	DataDirKind        = "portal-replica.datadir"
	ServiceKind        = "portal-replica.service"
	ReplicationKind    = "portal-replica.replication"
	PrimaryRestartKind = "portal-replica.primary-restart"
)

// primaryState is what the portal replica needs of the running primary.
type primaryState struct {
	logBin       bool
	format       string
	port         int
	skipNetwork  bool
	serverID     int64
	binlogNeeded bool // log_bin off or not ROW
}

func readPrimary(ctx context.Context, db *sql.DB) (primaryState, error) {
	var s primaryState
	var logBin, skipNet int
	err := db.QueryRowContext(ctx, "SELECT @@global.log_bin, @@global.binlog_format, @@global.port, @@global.skip_networking, @@global.server_id").
		Scan(&logBin, &s.format, &s.port, &skipNet, &s.serverID)
	if err != nil {
		return s, fmt.Errorf("read MariaDB's binary log settings: %w", err)
	}
	s.logBin, s.skipNetwork = logBin == 1, skipNet == 1
	s.binlogNeeded = !s.logBin || !strings.EqualFold(s.format, "ROW")
	return s, nil
}

// readShared reads the primary's state through the run's shared connection.
func readShared(ctx context.Context, primary *mariadb.Shared) (primaryState, error) {
	db, err := primary.Get(ctx)
	if err != nil {
		return primaryState{}, err
	}
	return readPrimary(ctx, db)
}

// describe is the binary-log state in a few words, for the gate's reason and doctor.
func (s primaryState) describe() string {
	switch {
	case !s.logBin:
		return "no binary log"
	case s.binlogNeeded:
		return "binlog_format=" + s.format
	}
	return "a ROW binary log"
}

// BinlogState reads whether the running server at db writes the ROW binary log the portal
// replica needs, and says what it writes.
func BinlogState(ctx context.Context, db *sql.DB) (ok bool, state string, err error) {
	s, err := readPrimary(ctx, db)
	if err != nil {
		return false, "", err
	}
	return !s.binlogNeeded, s.describe(), nil
}

// binlogGate holds the later steps until the running primary writes a ROW binary log and
// listens on TCP. It never restarts anything.
type binlogGate struct {
	primary *mariadb.Shared
	dropIn  string
}

func (g binlogGate) check(ctx context.Context) error {
	s, err := readShared(ctx, g.primary)
	if err != nil {
		return err
	}
	if s.binlogNeeded {
		return &step.DeferredError{Reason: fmt.Sprintf("MariaDB runs with %s, the portal replica needs a ROW-format binary log (%s): %s",
			s.describe(), g.dropIn, RestartHint)}
	}
	if s.skipNetwork {
		return &step.DeferredError{Reason: "MariaDB runs with skip-networking and the portal replica connects to it on 127.0.0.1: remove skip-networking, run `systemctl restart mariadb`, then `emrkit apply`"}
	}
	return nil
}

// binlogStep puts the binary-log drop-in on the primary when the running server needs it.
type binlogStep struct {
	primary *mariadb.Shared
	r       Replica
	path    string
	since   string
}

func (s binlogStep) Kind() string   { return BinlogKind }
func (s binlogStep) Target() string { return s.path }
func (s binlogStep) ID() string     { return BinlogKind + ":" + s.path }
func (s binlogStep) Since() string  { return s.since }
func (s binlogStep) Describe() string {
	return "MariaDB writes a ROW-format binary log for the portal replica (" + s.path + ")"
}

func (s binlogStep) file(full bool) managedfile.Step {
	return managedfile.Step{Path: s.path, Content: []byte(dropIn(full)), Mode: 0o644,
		What: "MariaDB binary log for the portal replica", SinceVersion: s.since}
}

// Preflight checks, before anything changes, that the primary has the portal database and
// tables, that the intermediate's port is not its own and its server_id none of the
// replicas'.
func (s binlogStep) Preflight(ctx context.Context) error {
	db, err := s.primary.Get(ctx)
	if err != nil {
		return err
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", s.r.Database).Scan(&n); err != nil {
		return fmt.Errorf("look for database %s: %w", s.r.Database, err)
	}
	if n == 0 {
		return fmt.Errorf("database %s does not exist on MariaDB; fix database.name in the emrkit config", s.r.Database)
	}
	for _, t := range s.r.Tables {
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", s.r.Database, t).Scan(&n); err != nil {
			return fmt.Errorf("look for table %s.%s: %w", s.r.Database, t, err)
		}
		if n == 0 {
			return fmt.Errorf("portal table %s.%s does not exist; fix portal.tables in the emrkit config", s.r.Database, t)
		}
	}
	st, err := readPrimary(ctx, db)
	if err != nil {
		return err
	}
	if st.port == s.r.Port && !st.skipNetwork {
		return fmt.Errorf("portal.replica.port %d is MariaDB's own port; pick another", s.r.Port)
	}
	if st.serverID == IntermediateServerID || st.serverID == OffsiteServerID {
		return fmt.Errorf("MariaDB's server_id is %d, which the portal replicas use; give MariaDB another server_id", st.serverID)
	}
	return nil
}

// wanted returns the drop-in the running primary needs, or ok=false when none is.
func (s binlogStep) wanted(ctx context.Context) (managedfile.Step, bool, error) {
	st, err := readShared(ctx, s.primary)
	if err != nil || !st.binlogNeeded {
		return managedfile.Step{}, false, err
	}
	f := s.file(!st.logBin)
	if err := f.Preflight(ctx); err != nil { // no conf.d: MariaDB's layout is not Debian's
		return f, false, err
	}
	return f, true, nil
}

// Check is true while the drop-in holds emrkit's content (a restart may still be due: the
// gate says so), or when the running server needs none.
func (s binlogStep) Check(ctx context.Context) (bool, error) {
	cur, err := fsutil.ReadFile(s.path, fsutil.TextLimit)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", s.path, err)
	}
	if err == nil && ownDropIn(cur) {
		return true, nil
	}
	_, needed, err := s.wanted(ctx)
	return !needed, err
}

func (s binlogStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	f, needed, err := s.wanted(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !needed {
		return nil, nil, errors.New("MariaDB already writes a ROW binary log: no drop-in needed")
	}
	return f.Capture(ctx)
}

// Apply writes the variant whose journaled record desired is, so a run resumed after a crash
// writes what the journal says even if the server changed in between.
func (s binlogStep) Apply(ctx context.Context, desired json.RawMessage) error {
	// The journal stores the record indented: compare the records, not their layout.
	var want bytes.Buffer
	if err := json.Compact(&want, desired); err != nil {
		return fmt.Errorf("%s: journaled drop-in record: %w", s.ID(), err)
	}
	for _, full := range []bool{true, false} {
		f := s.file(full)
		d, _, err := f.Capture(ctx)
		if err != nil {
			return err
		}
		var got bytes.Buffer
		if err := json.Compact(&got, d); err != nil {
			return err
		}
		if bytes.Equal(got.Bytes(), want.Bytes()) {
			return f.Apply(ctx, desired)
		}
	}
	return fmt.Errorf("%s: the journaled drop-in is not one this emrkit writes", s.ID())
}

// ownDropIn reports whether content is one of the drop-ins emrkit writes.
func ownDropIn(content []byte) bool {
	return bytes.Equal(content, []byte(dropIn(true))) || bytes.Equal(content, []byte(dropIn(false)))
}

// binlogUndoer removes the drop-in while it holds emrkit's content (managedfile's undo).
type binlogUndoer struct{}

func (binlogUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	o, detail, err := managedfile.Undoer{}.Undo(ctx, e)
	if err == nil && o == step.Restored {
		detail = "MariaDB keeps writing its binary log until its next restart"
	}
	return o, detail, err
}

func (binlogUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	return managedfile.Undoer{}.Holds(ctx, e)
}
