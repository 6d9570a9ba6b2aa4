// Package step owns the contract between emrkit's plan and its journal: a Step knows how to
// check, capture and apply one change; an Undoer knows how to reverse an entry of its kind
// from the journal alone; the Runner journals each change around Apply and Undo so a crash at
// any point converges on re-run.
package step

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/emrkit/emrkit/pkg/journal"
)

// Step is one desired change to the host.
type Step interface {
	// ID is unique and stable across runs: Kind + ":" + Target.
	ID() string
	Kind() string
	Target() string
	// Since is the package version that introduced the step.
	Since() string
	// Describe says in a few words what the step makes true, for humans.
	Describe() string
	// Check reports whether the host already holds the desired state. A *DeferredError means
	// the step cannot run on this host yet.
	Check(ctx context.Context) (bool, error)
	// Capture records, before any change, what the step will write and what is there now.
	Capture(ctx context.Context) (desired, before json.RawMessage, err error)
	// Apply makes the change Capture described (desired is what was journaled, so a run
	// resumed after a crash writes the same thing, e.g. the same generated secret). It must
	// be idempotent: after a crash it runs again.
	Apply(ctx context.Context, desired json.RawMessage) error
}

// Preflighter is a Step that can validate its inputs before any step changes anything (the
// user exists, the file is there). Apply runs every Preflight first, so bad input fails the
// run with nothing written. A *DeferredError from Preflight is not a failure.
type Preflighter interface {
	Preflight(ctx context.Context) error
}

// Activation is how a service takes changes made to its files (Apache reads its
// configuration on a graceful restart). Steps that share a Key share one Activate per run.
type Activation struct {
	// Key names the service instance (Apache of /etc/apache2).
	Key string
	// What says in a few words what Activate does, for humans.
	What     string
	Activate func(ctx context.Context) error
}

// Activated is a Step whose Apply makes and validates its change (Apache's configuration
// test), and whose service takes it only at Activation. The runner activates once, after the
// run's last step, and journals the steps done only after that: a crash or a failure before
// leaves them pending, and the next run, finding them in sync, activates again.
type Activated interface {
	Activation() Activation
}

// activationOf is s's Activation, also through a Gated wrapper.
func activationOf(s Step) (Activation, bool) {
	switch s := s.(type) {
	case Activated:
		return s.Activation(), true
	case Gated:
		return activationOf(s.Step)
	}
	return Activation{}, false
}

// Outcome is what an undo did.
type Outcome int

const (
	// Restored: the before-state is back.
	Restored Outcome = iota
	// AlreadyBefore: the host already held the before-state (the change never landed).
	AlreadyBefore
	// Kept: someone changed the value since emrkit wrote it; it was left alone.
	Kept
	// Skipped: what the entry touches is gone or cannot be reached (e.g. a tool was removed).
	Skipped
)

func (o Outcome) String() string {
	return [...]string{"restored", "already as before", "kept (changed since)", "skipped"}[o]
}

// Undoer reverses and inspects journal entries of one kind.
type Undoer interface {
	// Undo restores e's before-state only where the host still holds what emrkit wrote
	// (compare-and-swap). detail explains Kept and Skipped outcomes.
	Undo(ctx context.Context, e journal.Entry) (o Outcome, detail string, err error)
	// Holds reports whether the host still holds what e wrote (false = drift).
	Holds(ctx context.Context, e journal.Entry) (bool, error)
}

// Sealer is an Undoer whose entries' desired state holds a secret only Apply needs (a run
// resumed after a crash must write the same one). Once an entry is no longer pending, the
// runner journals Seal(desired) in its place: what undo compares against (a digest), without
// the secret. Seal returns an entry it sealed already unchanged.
type Sealer interface {
	Seal(desired json.RawMessage) (json.RawMessage, error)
	// Unseal is the way back for a downgrade to a release that predates sealing (SealedSince),
	// whose undo needs the whole entry: the secret, read back from where Apply wrote it, while
	// it is still the one the digest names. ok is false when it no longer is (changed since,
	// so that release's undo keeps it, as it should).
	Unseal(ctx context.Context, e journal.Entry) (desired json.RawMessage, ok bool, err error)
}

// SealedSince is the first release that seals entries: a downgrade below it unseals them.
const SealedSince = "0.7.0~"

// Registry maps an entry kind to its undoer.
type Registry map[string]Undoer

// DeferredError says a step cannot run on this host yet (the EMR is not installed).
type DeferredError struct{ Reason string }

func (e *DeferredError) Error() string { return "deferred: " + e.Reason }

// IsDeferred reports whether err defers the step.
func IsDeferred(err error) (*DeferredError, bool) {
	var d *DeferredError
	ok := errors.As(err, &d)
	return d, ok
}

// Unavailable is a placeholder for a step whose target is not on this host yet (no
// oscar.properties, no database): it journals a deferral and changes nothing.
type Unavailable struct {
	StepID, StepKind, StepTarget, StepSince, What, Reason string
}

func (u Unavailable) ID() string       { return u.StepID }
func (u Unavailable) Kind() string     { return u.StepKind }
func (u Unavailable) Target() string   { return u.StepTarget }
func (u Unavailable) Since() string    { return u.StepSince }
func (u Unavailable) Describe() string { return u.What }
func (u Unavailable) Check(context.Context) (bool, error) {
	return false, &DeferredError{Reason: u.Reason}
}
func (u Unavailable) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	return nil, nil, &DeferredError{Reason: u.Reason}
}
func (u Unavailable) Apply(context.Context, json.RawMessage) error {
	return &DeferredError{Reason: u.Reason}
}

// Gated runs Step only once Gate passes. A Gate failing with *DeferredError defers the step
// (e.g. OSCAR's TOTP=1 switch waits for the 2FA columns: switched on without them, OSCAR
// cannot log anyone in).
type Gated struct {
	Step
	Gate func(ctx context.Context) error
	// After is the ID of the earlier step whose change opens the gate, so a dry run in which
	// that step would apply reports this one as applying too, instead of deferred.
	After string
}

// Preflight validates the gated step's own inputs; the gate may depend on earlier steps.
func (g Gated) Preflight(ctx context.Context) error {
	if p, ok := g.Step.(Preflighter); ok {
		return p.Preflight(ctx)
	}
	return nil
}

func (g Gated) Check(ctx context.Context) (bool, error) {
	if err := g.Gate(ctx); err != nil {
		return false, err
	}
	return g.Step.Check(ctx)
}
