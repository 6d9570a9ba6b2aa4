package step

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/emrkit/emrkit/pkg/fault"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/redact"
)

// Store is the part of a journal the runner needs; *journal.Journal satisfies it.
type Store interface {
	Entries() []journal.Entry
	Get(id string) (journal.Entry, bool)
	Put(journal.Entry) error
	// Settle records what a crash may lose without harm (done), written with the next Put
	// or Flush; every run flushes before it returns.
	Settle(journal.Entry) error
	Flush() error
	Delete(id string) error
}

// Runner converges the host on a plan and reverts journal entries, journaling every change.
type Runner struct {
	Journal Store
	Undoers Registry
	// Out gets one human-readable line per action.
	Out io.Writer
	// DryRun reports what would happen and changes nothing, journal included.
	DryRun bool
	// Origin is recorded on new entries: "" for the plan, journal.OriginCommand for a direct
	// command.
	Origin string

	// wouldApply holds, in a dry run, the steps it reported as changing the host.
	wouldApply map[string]bool
	// waiting holds, in first-use order, the activations this run's changes wait for.
	waiting []waiting
}

// waiting is an activation and the entries it settles done.
type waiting struct {
	Activation
	entries []journal.Entry
}

// Report counts what a run did.
type Report struct {
	Applied, Finished, Unchanged, Deferred int
	Undone, Kept, Skipped, Unknown         int
}

// Changed reports whether the run changed (or, dry, would change) anything on the host.
func (r Report) Changed() bool { return r.Applied+r.Finished+r.Undone > 0 }

// dryVerb is how a dry run words what it would do.
var dryVerb = map[string]string{
	"applied": "would apply", "re-applied": "would re-apply", "finished": "would finish",
	"deferred": "would defer", "undo": "would undo", "keep": "would keep", "activated": "would activate",
}

func (r *Runner) say(verb, what string) {
	if w, ok := dryVerb[verb]; ok && r.DryRun {
		verb = w
	}
	fmt.Fprintf(r.Out, "%-18s %s\n", verb, what)
}

// Apply converges the host on the plan's steps, in order. Journal entries of steps no longer
// planned (config changed, or a newer release's steps on an older binary) are reverted first.
func (r *Runner) Apply(ctx context.Context, steps []Step) (Report, error) {
	var rep Report
	if err := preflight(ctx, steps); err != nil {
		return rep, err
	}
	if err := r.sealOld(); err != nil {
		return rep, err
	}
	planned := map[string]bool{}
	for _, s := range steps {
		planned[s.ID()] = true
	}
	// Entries made by a direct command (2fa enroll) are the admin's choice, not the plan's:
	// only revert and purge undo them.
	stale := func(e journal.Entry) bool { return !planned[e.ID] && e.Origin != journal.OriginCommand }
	if err := r.revert(ctx, stale, false, &rep); err != nil {
		return rep, r.flush(err)
	}
	return rep, r.flush(r.run(ctx, steps, &rep))
}

// Run applies just steps, leaving every other journal entry alone (a direct command).
func (r *Runner) Run(ctx context.Context, steps []Step) (Report, error) {
	var rep Report
	if err := preflight(ctx, steps); err != nil {
		return rep, err
	}
	if err := r.sealOld(); err != nil {
		return rep, err
	}
	return rep, r.flush(r.run(ctx, steps, &rep))
}

// preflight validates every step's inputs before anything changes.
func preflight(ctx context.Context, steps []Step) error {
	for _, s := range steps {
		if p, ok := s.(Preflighter); ok {
			err := p.Preflight(ctx)
			if _, deferred := IsDeferred(err); err != nil && !deferred {
				return fmt.Errorf("%s: %w (nothing was changed)", s.Describe(), err)
			}
		}
	}
	return nil
}

// run applies steps in order and stops at the first failure: later steps may depend on it.
// The changes made before it are activated all the same: each passed its own test.
func (r *Runner) run(ctx context.Context, steps []Step, rep *Report) error {
	var err error
	for _, s := range steps {
		if err = r.applyOne(ctx, s, rep); err != nil {
			err = fmt.Errorf("%s: %w", s.Describe(), err)
			break
		}
	}
	aerr := r.activate(ctx)
	switch {
	case err == nil:
		return aerr
	case aerr != nil:
		return fmt.Errorf("%w; and %v", err, aerr)
	}
	return err
}

// activate has each service take this run's changes, once, and only then settles their
// entries done.
func (r *Runner) activate(ctx context.Context) error {
	pending := r.waiting
	r.waiting = nil
	for _, w := range pending {
		if r.DryRun {
			r.say("activated", fmt.Sprintf("%s (%d changes)", w.What, len(w.entries)))
			continue
		}
		fault.Point("activate " + w.Key)
		if err := w.Activate(ctx); err != nil {
			return fmt.Errorf("%s: %w (%d changes stay pending: `emrkit apply` activates them again)", w.What, err, len(w.entries))
		}
		fault.Point("activated " + w.Key)
		r.say("activated", fmt.Sprintf("%s (%d changes)", w.What, len(w.entries)))
		for _, e := range w.entries {
			if err := r.settle(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// await holds e, done, until its service takes the change.
func (r *Runner) await(a Activation, e journal.Entry) {
	for i := range r.waiting {
		if r.waiting[i].Key == a.Key {
			r.waiting[i].entries = append(r.waiting[i].entries, e)
			return
		}
	}
	r.waiting = append(r.waiting, waiting{Activation: a, entries: []journal.Entry{e}})
}

func (r *Runner) applyOne(ctx context.Context, s Step, rep *Report) error {
	prev, known := r.Journal.Get(s.ID())
	inSync, err := s.Check(ctx)
	if g, ok := s.(Gated); ok && r.DryRun && g.After != "" && r.wouldApply[g.After] {
		if _, deferred := IsDeferred(err); deferred {
			// A real run applies g.After first, which opens the gate.
			rep.Applied++
			r.say("applied", s.Describe()+" (after "+g.After+")")
			r.wouldApply[s.ID()] = true
			return nil
		}
	}
	if d, ok := IsDeferred(err); ok {
		rep.Deferred++
		r.say("deferred", fmt.Sprintf("%s: %s", s.Describe(), d.Reason))
		if known && prev.State == journal.Deferred && prev.Note == d.Reason {
			return nil
		}
		if known && (prev.State == journal.Done || prev.State == journal.Pending) {
			return nil // a change already made stays journaled for undo
		}
		return r.put(journal.Entry{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), Since: s.Since(), State: journal.Deferred, Note: d.Reason})
	}
	if err != nil {
		return err
	}
	if known && prev.State == journal.Deferred {
		if err := r.del(prev.ID); err != nil {
			return err
		}
		known = false
	}
	entry := prev
	switch {
	case known && prev.State == journal.Pending:
		// A crash left this change half-done. Its before-state was captured before anything
		// changed: keep it, whatever the host holds now. A change its service has still to
		// take is made again even when in place: its test may not have run.
		if _, activated := activationOf(s); !inSync || activated {
			if err := r.apply(ctx, s, entry.Desired); err != nil {
				return err
			}
		}
		rep.Finished++
		r.say("finished", s.Describe()+" (interrupted earlier)")
	case inSync:
		rep.Unchanged++
		return nil
	case known && prev.State == journal.Done:
		// Drift: someone changed it since. The original before-state still describes the
		// host as emrkit found it; only the desired record is refreshed.
		desired, _, err := s.Capture(ctx)
		if err != nil {
			return err
		}
		entry.Desired, entry.State = desired, journal.Pending
		if err := r.put(entry); err != nil {
			return err
		}
		if err := r.apply(ctx, s, entry.Desired); err != nil {
			return err
		}
		rep.Applied++
		r.say("re-applied", s.Describe()+" (had drifted)")
	default:
		desired, before, err := s.Capture(ctx)
		if err != nil {
			return err
		}
		entry = journal.Entry{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), Since: s.Since(),
			State: journal.Pending, Desired: desired, Before: before, Origin: r.Origin}
		if err := r.put(entry); err != nil {
			return err
		}
		if err := r.apply(ctx, s, entry.Desired); err != nil {
			return err
		}
		rep.Applied++
		r.say("applied", s.Describe())
	}
	entry.State, entry.Note = journal.Done, ""
	if a, ok := activationOf(s); ok {
		r.await(a, entry)
		return nil
	}
	return r.settle(entry)
}

func (r *Runner) apply(ctx context.Context, s Step, desired json.RawMessage) error {
	if r.DryRun {
		if r.wouldApply == nil {
			r.wouldApply = map[string]bool{}
		}
		r.wouldApply[s.ID()] = true
		return nil
	}
	fault.Point("apply " + s.ID())
	if err := s.Apply(ctx, desired); err != nil {
		return err
	}
	fault.Point("applied " + s.ID())
	return nil
}

func (r *Runner) put(e journal.Entry) error {
	if r.DryRun {
		return nil
	}
	e, err := r.sealed(e)
	if err != nil {
		return err
	}
	return r.Journal.Put(e)
}

func (r *Runner) settle(e journal.Entry) error {
	if r.DryRun {
		return nil
	}
	e, err := r.sealed(e)
	if err != nil {
		return err
	}
	return r.Journal.Settle(e)
}

// sealed is e as the journal keeps it: once e is no longer pending, its kind's Sealer drops
// what only Apply needed.
func (r *Runner) sealed(e journal.Entry) (journal.Entry, error) {
	s, ok := r.Undoers[e.Kind].(Sealer)
	if !ok || e.State == journal.Pending || len(e.Desired) == 0 {
		return e, nil
	}
	d, err := s.Seal(e.Desired)
	if err != nil {
		return e, fmt.Errorf("seal journal entry %s: %w", e.ID, err)
	}
	e.Desired = d
	return e, nil
}

// sealOld seals the entries an older emrkit journaled whole (0.6.0 kept done enrolments'
// secrets), to be written with the run's flush. An entry that does not decode stays as it
// is: its undo reports the damage.
func (r *Runner) sealOld() error {
	if r.DryRun {
		return nil
	}
	for _, e := range r.Journal.Entries() {
		s, err := r.sealed(e)
		if err != nil || bytes.Equal(s.Desired, e.Desired) {
			continue
		}
		if err := r.Journal.Settle(s); err != nil {
			return err
		}
	}
	return nil
}

// Unseal gives every done entry a Sealer sealed its whole desired state back (Sealer.Unseal),
// for a downgrade to a release older than SealedSince, and writes the journal. It returns how
// many it unsealed and, one line each, those it could not, which that release will keep.
func (r *Runner) Unseal(ctx context.Context) (int, []string, error) {
	n, left := 0, []string(nil)
	if r.DryRun {
		return 0, nil, nil
	}
	for _, e := range r.Journal.Entries() {
		s, ok := r.Undoers[e.Kind].(Sealer)
		if !ok || e.State != journal.Done {
			continue
		}
		// Seal changes only a whole entry: one it leaves alone is sealed.
		if sealed, err := s.Seal(e.Desired); err != nil || !bytes.Equal(sealed, e.Desired) {
			continue
		}
		d, ok, err := s.Unseal(ctx, e)
		switch {
		case err != nil:
			left = append(left, fmt.Sprintf("%s: %s", e.ID, redact.Error(err)))
			continue
		case !ok:
			left = append(left, e.ID+": changed since emrkit wrote it")
			continue
		}
		e.Desired = d
		if err := r.Journal.Settle(e); err != nil {
			return n, left, err
		}
		n++
	}
	return n, left, r.flush(nil)
}

// flush writes what the run settled, keeping err, the run's own error, first.
func (r *Runner) flush(err error) error {
	if r.DryRun {
		return err
	}
	if ferr := r.Journal.Flush(); err == nil {
		err = ferr
	}
	return err
}

func (r *Runner) del(id string) error {
	if r.DryRun {
		return nil
	}
	return r.Journal.Delete(id)
}

// ErrUnknownKind marks entries this emrkit cannot undo (written by a newer release).
var ErrUnknownKind = errors.New("unknown change kind")

// Revert undoes, newest first, every pending or done entry that match selects. An entry of a
// kind this binary does not know is an error (after the others were reverted): only the
// release that wrote it can undo it.
func (r *Runner) Revert(ctx context.Context, match func(journal.Entry) bool) (Report, error) {
	var rep Report
	if err := r.sealOld(); err != nil {
		return rep, err
	}
	err := r.revert(ctx, match, true, &rep)
	return rep, r.flush(err)
}

func (r *Runner) revert(ctx context.Context, match func(journal.Entry) bool, strict bool, rep *Report) error {
	entries := r.Journal.Entries()
	var unknown []string
	for _, e := range slices.Backward(entries) {
		if !match(e) {
			continue
		}
		if e.State == journal.Deferred {
			if err := r.del(e.ID); err != nil {
				return err
			}
			continue
		}
		if e.State != journal.Done && e.State != journal.Pending {
			continue
		}
		u, ok := r.Undoers[e.Kind]
		if !ok {
			rep.Unknown++
			unknown = append(unknown, e.ID)
			r.say("left in place", fmt.Sprintf("%s (kind %q unknown to this emrkit; revert it with the release that made it)", e.ID, e.Kind))
			continue
		}
		if err := r.undoOne(ctx, u, e, rep); err != nil {
			return fmt.Errorf("undo %s: %w", e.ID, err)
		}
	}
	if strict && len(unknown) > 0 {
		return fmt.Errorf("%w: %d entries left in place (%v)", ErrUnknownKind, len(unknown), unknown)
	}
	return nil
}

func (r *Runner) undoOne(ctx context.Context, u Undoer, e journal.Entry, rep *Report) error {
	if r.DryRun {
		holds, err := u.Holds(ctx, e)
		if err != nil {
			return err
		}
		if holds {
			rep.Undone++
			r.say("undo", e.ID)
		} else {
			rep.Kept++
			r.say("keep", e.ID+" (changed since emrkit wrote it)")
		}
		return nil
	}
	fault.Point("undo " + e.ID)
	o, detail, err := u.Undo(ctx, e)
	if err != nil {
		return err
	}
	fault.Point("undone " + e.ID)
	line := e.ID
	if detail != "" {
		line += ": " + detail
	}
	switch o {
	case Restored:
		rep.Undone++
		r.say("undone", line)
	case AlreadyBefore:
		r.say("nothing to undo", line)
	case Kept:
		rep.Kept++
		r.say("kept", line)
	case Skipped:
		rep.Skipped++
		r.say("skipped", line)
	}
	e.State, e.Note = journal.Undone, o.String()
	if detail != "" {
		e.Note += ": " + detail
	}
	// Written at once, unlike done: a later undo may take away what this one would need to
	// look at again (the 2FA columns an enrolment's undo reads).
	return r.put(e)
}

// Row is one journal entry as the host holds it now.
type Row struct {
	journal.Entry
	// Host is "matches", "drift", "unknown kind", "error: ..." for done and pending entries,
	// and "" otherwise.
	Host string
}

// Inspect checks every entry against the host, for status.
func Inspect(ctx context.Context, entries []journal.Entry, undoers Registry) []Row {
	rows := make([]Row, 0, len(entries))
	for _, e := range entries {
		row := Row{Entry: e}
		if e.State == journal.Done || e.State == journal.Pending {
			u, ok := undoers[e.Kind]
			switch holds, err := checkHolds(ctx, u, ok, e); {
			case !ok:
				row.Host = "unknown kind"
			case err != nil:
				row.Host = "error: " + err.Error()
			case holds:
				row.Host = "matches"
			default:
				row.Host = "drift"
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func checkHolds(ctx context.Context, u Undoer, ok bool, e journal.Entry) (bool, error) {
	if !ok {
		return false, nil
	}
	return u.Holds(ctx, e)
}
