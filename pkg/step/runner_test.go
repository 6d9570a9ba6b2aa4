package step_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
)

const original = "# OSCAR\nTOTP=0\nother=x\n"

type fixture struct {
	dir, path string
	j         *journal.Journal
	out       bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.path = filepath.Join(f.dir, "oscar.properties")
	if err := os.WriteFile(f.path, []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(f.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	f.j = j
	return f
}

func (f *fixture) runner(dry bool) *step.Runner {
	return &step.Runner{Journal: f.j, Undoers: step.Registry{props.Kind: props.Undoer{}}, Out: &f.out, DryRun: dry}
}

func (f *fixture) file(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) totp(v string) step.Step {
	return props.KeyStep{Path: f.path, Key: "TOTP", Value: v, SinceVersion: "0.1.0"}
}

var all = func(journal.Entry) bool { return true }

func TestApplyTwiceThenRevertRestoresBytes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	steps := []step.Step{f.totp("1"), props.KeyStep{Path: f.path, Key: "NEW", Value: "v", SinceVersion: "0.1.0"}}
	rep, err := f.runner(false).Apply(ctx, steps)
	if err != nil || rep.Applied != 2 {
		t.Fatalf("first apply: %+v %v", rep, err)
	}
	if got := f.file(t); got != "# OSCAR\nTOTP=1\nother=x\nNEW=v\n" {
		t.Fatalf("after apply: %q", got)
	}
	rep, err = f.runner(false).Apply(ctx, steps)
	if err != nil || rep.Changed() || rep.Unchanged != 2 {
		t.Fatalf("second apply changed something: %+v %v", rep, err)
	}
	rep, err = f.runner(false).Revert(ctx, all)
	if err != nil || rep.Undone != 2 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if got := f.file(t); got != original {
		t.Fatalf("after revert: %q", got)
	}
	for _, e := range f.j.Entries() {
		if e.State != journal.Undone {
			t.Fatalf("entry %s is %s", e.ID, e.State)
		}
	}
}

func TestRevertKeepsValueChangedSince(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.runner(false).Apply(ctx, []step.Step{f.totp("1")}); err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(f.file(t), "TOTP=1", "TOTP=2", 1)
	os.WriteFile(f.path, []byte(edited), 0o644)
	rows := step.Inspect(ctx, f.j.Entries(), f.runner(false).Undoers)
	if rows[0].Host != "drift" {
		t.Fatalf("status should show drift, got %q", rows[0].Host)
	}
	rep, err := f.runner(false).Revert(ctx, all)
	if err != nil || rep.Kept != 1 || rep.Undone != 0 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if f.file(t) != edited {
		t.Fatal("revert overwrote a value emrkit did not write")
	}
}

func TestPendingFromCrashKeepsOriginalBefore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.totp("1")
	// What a crash between Apply and the "done" record leaves: a pending entry with the
	// original before-state, and the file already changed.
	desired, before, err := s.Capture(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.j.Put(journal.Entry{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), Since: s.Since(), State: journal.Pending, Desired: desired, Before: before})
	if err := s.Apply(ctx, desired); err != nil {
		t.Fatal(err)
	}
	rep, err := f.runner(false).Apply(ctx, []step.Step{s})
	if err != nil || rep.Finished != 1 {
		t.Fatalf("resume: %+v %v", rep, err)
	}
	if e, _ := f.j.Get(s.ID()); e.State != journal.Done {
		t.Fatalf("state %s", e.State)
	}
	if _, err := f.runner(false).Revert(ctx, all); err != nil {
		t.Fatal(err)
	}
	if f.file(t) != original {
		t.Fatalf("revert after resumed crash: %q", f.file(t))
	}
}

func TestStaleEntryRevertedWhenStepLeavesPlan(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.runner(false).Apply(ctx, []step.Step{f.totp("1")}); err != nil {
		t.Fatal(err)
	}
	rep, err := f.runner(false).Apply(ctx, nil)
	if err != nil || rep.Undone != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	if f.file(t) != original {
		t.Fatal("stale step not undone")
	}
}

func TestDeferredThenAvailable(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.totp("1")
	placeholder := step.Unavailable{StepID: s.ID(), StepKind: s.Kind(), StepTarget: s.Target(), StepSince: "0.1.0", What: "set TOTP=1", Reason: "OSCAR not installed"}
	rep, err := f.runner(false).Apply(ctx, []step.Step{placeholder})
	if err != nil || rep.Deferred != 1 || rep.Changed() {
		t.Fatalf("%+v %v", rep, err)
	}
	if e, _ := f.j.Get(s.ID()); e.State != journal.Deferred || e.Note != "OSCAR not installed" {
		t.Fatalf("deferral not journaled: %+v", e)
	}
	rep, err = f.runner(false).Apply(ctx, []step.Step{s})
	if err != nil || rep.Applied != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rep, err := f.runner(true).Apply(ctx, []step.Step{f.totp("1")})
	if err != nil || rep.Applied != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	if f.file(t) != original || len(f.j.Entries()) != 0 {
		t.Fatal("dry run changed the host or the journal")
	}
	if !strings.Contains(f.out.String(), "would apply") {
		t.Fatalf("dry-run output: %q", f.out.String())
	}
}

func TestRevertUnknownKindIsAnError(t *testing.T) {
	f := newFixture(t)
	f.j.Put(journal.Entry{ID: "future:x", Kind: "future", State: journal.Done})
	_, err := f.runner(false).Revert(context.Background(), all)
	if !errors.Is(err, step.ErrUnknownKind) {
		t.Fatalf("got %v", err)
	}
	if e, _ := f.j.Get("future:x"); e.State != journal.Done {
		t.Fatal("unknown entry must stay as it was")
	}
}

func TestCommandEntriesAreNotStale(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	cmd := f.runner(false)
	cmd.Origin = journal.OriginCommand
	if _, err := cmd.Apply(ctx, []step.Step{f.totp("1")}); err != nil {
		t.Fatal(err)
	}
	// A plan without the step leaves the command's change alone...
	if rep, err := f.runner(false).Apply(ctx, nil); err != nil || rep.Undone != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	// ...and revert still undoes it.
	if rep, err := f.runner(false).Revert(ctx, all); err != nil || rep.Undone != 1 || f.file(t) != original {
		t.Fatalf("%+v %v", rep, err)
	}
}

// A gated step whose gate an earlier step opens: a dry run reports it as applying when that
// step would apply, and as deferred when nothing opens the gate; neither changes anything.
func TestDryRunGateOpenedByEarlierStep(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	opener := f.totp("1")
	gated := step.Gated{Step: props.KeyStep{Path: f.path, Key: "other", Value: "y", SinceVersion: "0.1.0"}, After: opener.ID(),
		Gate: func(context.Context) error {
			if !strings.Contains(f.file(t), "TOTP=1") {
				return &step.DeferredError{Reason: "waits for TOTP=1"}
			}
			return nil
		}}
	rep, err := f.runner(true).Apply(ctx, []step.Step{opener, gated})
	if err != nil || rep.Applied != 2 || rep.Deferred != 0 {
		t.Fatalf("dry run with the opener: %+v %v\n%s", rep, err, f.out.String())
	}
	rep, err = f.runner(true).Apply(ctx, []step.Step{gated})
	if err != nil || rep.Applied != 0 || rep.Deferred != 1 {
		t.Fatalf("dry run without the opener: %+v %v", rep, err)
	}
	if f.file(t) != original || len(f.j.Entries()) != 0 {
		t.Fatal("dry run changed the host or the journal")
	}
	rep, err = f.runner(false).Apply(ctx, []step.Step{opener, gated})
	if err != nil || rep.Applied != 2 {
		t.Fatalf("real run: %+v %v", rep, err)
	}
}

// crashBeforeFlush is a journal whose process dies before the run's final flush.
type crashBeforeFlush struct{ *journal.Journal }

func (crashBeforeFlush) Flush() error { return nil }

// A done record is settled, not written at once: lost in a crash, it leaves the entry pending
// in the file, and the next run finds the change on the host and finishes it.
func TestDoneLostInACrashIsFinishedByTheNextRun(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	r := f.runner(false)
	r.Journal = crashBeforeFlush{f.j}
	if _, err := r.Apply(ctx, []step.Step{f.totp("1")}); err != nil {
		t.Fatal(err)
	}
	f.j.Close()
	on, err := journal.Read(filepath.Join(f.dir, "state"))
	if err != nil || len(on) != 1 || on[0].State != journal.Pending {
		t.Fatalf("journal file after the crash: %+v %v", on, err)
	}
	if f.j, err = journal.Open(filepath.Join(f.dir, "state")); err != nil {
		t.Fatal(err)
	}
	rep, err := f.runner(false).Apply(ctx, []step.Step{f.totp("1")})
	if err != nil || rep.Finished != 1 || !strings.Contains(f.file(t), "TOTP=1") {
		t.Fatalf("re-run: %+v %v", rep, err)
	}
	if on, _ := journal.Read(filepath.Join(f.dir, "state")); on[0].State != journal.Done {
		t.Fatalf("after the re-run: %+v", on)
	}
}

// reloaded is a step whose service takes its change at Activation (Apache's graceful reload).
type reloaded struct {
	props.KeyStep
	activate func(context.Context) error
	applies  *int
}

func (s reloaded) Apply(ctx context.Context, d json.RawMessage) error {
	*s.applies++
	return s.KeyStep.Apply(ctx, d)
}

func (s reloaded) Activation() step.Activation {
	return step.Activation{Key: "svc", What: "svc: reload", Activate: s.activate}
}

// TestActivationOncePerRunAndPendingUntilThen: two changes to one service are activated by
// one call after both; their entries are pending until it succeeds, so a failed (or killed)
// activation is done again by the next run, and a run that changes nothing activates nothing.
func TestActivationOncePerRunAndPendingUntilThen(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	calls, applies, fail := 0, 0, true
	var states []journal.State
	var steps []step.Step
	activate := func(context.Context) error {
		calls++
		for _, s := range steps {
			e, _ := f.j.Get(s.ID())
			states = append(states, e.State)
		}
		if fail {
			return errors.New("reload refused")
		}
		return nil
	}
	steps = []step.Step{
		reloaded{props.KeyStep{Path: f.path, Key: "A", Value: "1", SinceVersion: "0.1.0"}, activate, &applies},
		// Gated: the wrapper keeps the step's activation.
		step.Gated{Step: reloaded{props.KeyStep{Path: f.path, Key: "B", Value: "2", SinceVersion: "0.1.0"}, activate, &applies},
			Gate: func(context.Context) error { return nil }},
	}
	_, err := f.runner(false).Apply(ctx, steps)
	if err == nil || !strings.Contains(err.Error(), "2 changes stay pending") || calls != 1 {
		t.Fatalf("failed activation: %v, %d calls", err, calls)
	}
	for _, st := range states {
		if len(states) != 2 || st != journal.Pending {
			t.Fatalf("entries at activation: %v, want pending", states)
		}
	}
	f.j.Close()
	reopened, err := journal.Open(filepath.Join(f.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reopened.Close() })
	f.j = reopened
	for _, s := range steps {
		if e, _ := f.j.Get(s.ID()); e.State != journal.Pending {
			t.Fatalf("after the failed activation the journal on disk has %s %v, want pending", s.ID(), e.State)
		}
	}

	// In place but not taken: each change is made (and so tested) again, then activated.
	fail, calls, applies = false, 0, 0
	rep, err := f.runner(false).Apply(ctx, steps)
	if err != nil || rep.Finished != 2 || calls != 1 || applies != 2 || !strings.Contains(f.out.String(), "activated          svc: reload (2 changes)") {
		t.Fatalf("next run: %+v %v, %d calls\n%s", rep, err, calls, f.out.String())
	}
	for _, s := range steps {
		if e, _ := f.j.Get(s.ID()); e.State != journal.Done {
			t.Errorf("after activation %s is %v, want done", s.ID(), e.State)
		}
	}
	calls = 0
	if rep, err := f.runner(false).Apply(ctx, steps); err != nil || rep.Changed() || calls != 0 {
		t.Fatalf("no-op run: %+v %v, %d activations", rep, err, calls)
	}
}
