package apache

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// ModKind is the journal kind of a module emrkit enabled (a2enmod, maintainer mode).
const ModKind = "apache.mod"

type modDesired struct {
	Name string `json:"name"`
}

type modBefore struct {
	Enabled bool `json:"enabled"`
}

// ModStep enables Apache's module Name, which a snippet of emrkit's needs (headers for the
// response headers). Undo disables it only when emrkit enabled it.
type ModStep struct {
	Env          Env
	Name         string
	What         string
	SinceVersion string
}

func (s ModStep) Kind() string     { return ModKind }
func (s ModStep) Target() string   { return s.Env.availablePath(s.Env.mod(), s.Name) }
func (s ModStep) ID() string       { return ModKind + ":" + s.Name }
func (s ModStep) Since() string    { return s.SinceVersion }
func (s ModStep) Describe() string { return fmt.Sprintf("Apache: module %s (%s)", s.Name, s.What) }

// Preflight defers the step while Apache is not installed.
func (s ModStep) Preflight(ctx context.Context) error { return ConfStep{Env: s.Env}.Preflight(ctx) }

func (s ModStep) Check(ctx context.Context) (bool, error) {
	if err := s.Preflight(ctx); err != nil {
		return false, err
	}
	return s.Env.isEnabled(s.Env.mod(), s.Name), nil
}

func (s ModStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	d, err := json.Marshal(modDesired{Name: s.Name})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(modBefore{Enabled: s.Env.isEnabled(s.Env.mod(), s.Name)})
	return d, b, err
}

// Apply enables the module (the run's graceful reload loads it); a failing configuration
// test disables it again.
func (s ModStep) Apply(ctx context.Context, raw json.RawMessage) error {
	var d modDesired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("%s: desired state: %w", s.ID(), err)
	}
	if err := s.Env.enable(ctx, s.Env.mod(), d.Name); err != nil {
		return err
	}
	return s.Env.test(ctx, "module "+d.Name, func() { s.Env.disable(ctx, s.Env.mod(), d.Name) })
}

// Activation has a running Apache load the module.
func (s ModStep) Activation() step.Activation { return s.Env.Activation() }

// ModUndoer disables a module emrkit enabled; one that was on before stays on.
type ModUndoer struct{ Env Env }

func (u ModUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[modDesired, modBefore](e)
	if err != nil {
		return 0, "", err
	}
	switch {
	case !u.Env.Installed():
		return step.Skipped, "Apache is no longer installed", nil
	case b.Enabled || !u.Env.isEnabled(u.Env.mod(), d.Name):
		return step.AlreadyBefore, "", nil
	}
	if err := u.Env.disable(ctx, u.Env.mod(), d.Name); err != nil {
		return 0, "", err
	}
	if err := u.Env.ConfigTest(ctx); err != nil {
		// Something else came to need the module since: put it back rather than break Apache.
		if err := u.Env.enable(ctx, u.Env.mod(), d.Name); err != nil {
			return 0, "", err
		}
		return step.Kept, fmt.Sprintf("module %s is kept: Apache's configuration needs it now (%v)", d.Name, err), nil
	}
	return step.Restored, "", u.Env.Reload(ctx)
}

func (u ModUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[modDesired, modBefore](e)
	if err != nil {
		return false, err
	}
	return u.Env.isEnabled(u.Env.mod(), d.Name), nil
}
