package migrate

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

// helperEnv makes the test binary a child that runs one migration slowly, to be killed
// (TestMain hands it to helperMain).
const helperEnv = "EMRKIT_MIGRATE_HELPER"

// helperMain runs `migrate up|down NAME` the way the command does, with small batches and a
// pause inside each batch's transaction, so the parent can SIGKILL it half-way, mid-batch.
func helperMain() int {
	ctx := context.Background()
	get := os.Getenv
	cfg := config.Database{Socket: get("H_SOCKET"), Name: get("H_DB"), User: "root", Port: config.P(3306)}
	db, err := mariadb.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	j, err := journal.Open(get("H_STATE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := Env{DB: Static(db), Database: cfg.Name, BatchSize: 200, Progress: io.Discard,
		afterBatch: func() { time.Sleep(50 * time.Millisecond) },
		Backup: func(ctx context.Context, label string, tables ...string) (string, error) {
			return backup.Dump(ctx, cfg, get("H_BACKUP"), label, tables...)
		}}
	s, err := NewStep(env, get("H_MIGRATION"), "0.4.0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &step.Runner{Journal: j, Undoers: Undoers(env), Out: io.Discard, Origin: journal.OriginCommand}
	if get("H_MODE") == "up" {
		_, err = r.Run(ctx, []step.Step{s})
	} else {
		_, err = r.Revert(ctx, func(e journal.Entry) bool { return e.ID == s.ID() })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// killHalfway runs the helper on f and SIGKILLs it once the progress table shows state with
// last_key at least atKey.
func killHalfway(t *testing.T, f *fixture, mode, name, state string, atKey int64) {
	t.Helper()
	f.j.Close() // the child takes the journal's lock
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "H_SOCKET="+f.cfg.Socket, "H_DB="+f.name, "H_STATE="+f.state,
		"H_BACKUP="+f.backup, "H_MIGRATION="+name, "H_MODE="+mode)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, ok, err := ReadState(context.Background(), f.db, name)
		if err == nil && ok && st.State == state && st.LastKey >= atKey {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("%s %s never reached %s at key %d (%+v, %v)", mode, name, state, atKey, st, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Kill() // SIGKILL: no deferred cleanup, an open transaction on the server
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
		t.Fatalf("%s finished before it was killed: %v", mode, err)
	}
	j, err := journal.Open(f.state)
	if err != nil {
		t.Fatal(err)
	}
	f.j = j
	t.Cleanup(func() { j.Close() })
}

// TestKilledUpAndDownResume: kill -9 half-way through up, re-run: the table is the one an
// uninterrupted run makes, and every change made before the kill was recorded. Then the same
// for down: the re-run finishes it and the table is the original byte for byte.
func TestKilledUpAndDownResume(t *testing.T) {
	srv := mariadbtest.Start(t)
	orig := newFixture(t, srv, "orig", "", fixtureRows)
	ref := newFixture(t, srv, "ref", "orig", 0)
	emr := newFixture(t, srv, "emr", "orig", 0)
	before := orig.dump()
	if _, err := ref.up(ref.env(), "middle-names"); err != nil {
		t.Fatal(err)
	}
	want := ref.dump()

	killHalfway(t, emr, "up", "middle-names", stateRunning, 3000)
	st, _, _ := ReadState(context.Background(), emr.db, "middle-names")
	if st.LastKey >= fixtureRows {
		t.Fatalf("up was not killed half-way: %+v", st)
	}
	if e, _ := emr.j.Get("migrate.middle-names:emr.demographic"); e.State != journal.Pending {
		t.Fatalf("journal after the kill: %+v", e)
	}
	assertRecorded(t, emr, orig.db, "middle-names")
	rep, err := emr.up(emr.env(), "middle-names")
	if err != nil || rep.Finished != 1 {
		t.Fatalf("resumed up: %+v %v", rep, err)
	}
	if emr.dump() != want {
		t.Fatal("resumed up made a different table than an uninterrupted run")
	}
	if !strings.Contains(emr.out.String(), "middle-names: resuming after demographic_no "+strconv.FormatInt(st.LastKey, 10)) {
		t.Fatalf("no resume notice:\n%s", emr.out)
	}

	killHalfway(t, emr, "down", "middle-names", stateUndoing, 4000)
	if st, _, _ := ReadState(context.Background(), emr.db, "middle-names"); st.LastKey >= 9900 || st.Restored == 0 || st.Backup == "" {
		t.Fatalf("down was not killed half-way: %+v", st)
	}
	rep, err = emr.down(emr.env(), "middle-names")
	if err != nil || rep.Undone != 1 {
		t.Fatalf("resumed down: %+v %v\n%s", rep, err, emr.out)
	}
	if emr.dump() != before {
		t.Fatal("resumed down did not give back the original table")
	}
	if backups, _ := backup.List(emr.backup); len(backups) != 1 {
		t.Fatalf("resumed down should reuse its first backup: %v", backups)
	}
}
