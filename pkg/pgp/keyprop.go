package pgp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
)

// keyProp sets PGP_KEY to the export key's fingerprint through props.KeyStep (same kind,
// same undo). The value is read when the step runs, because a generated key exists only once
// the step before it has run; Apply writes the journaled value, so a resumed run writes what
// was recorded.
type keyProp struct {
	Path         string
	Read         func() ([]byte, error)
	SinceVersion string
}

func (k keyProp) base(value string) props.KeyStep {
	return props.KeyStep{Path: k.Path, Key: "PGP_KEY", Value: value, SinceVersion: k.SinceVersion}
}

func (k keyProp) Kind() string   { return props.Kind }
func (k keyProp) Target() string { return k.base("").Target() }
func (k keyProp) ID() string     { return k.base("").ID() }
func (k keyProp) Since() string  { return k.SinceVersion }
func (k keyProp) Describe() string {
	return fmt.Sprintf("set PGP_KEY to the export key's fingerprint in %s", k.Path)
}

func (k keyProp) Preflight(ctx context.Context) error { return k.base("").Preflight(ctx) }

func (k keyProp) resolve() (props.KeyStep, error) {
	data, err := k.Read()
	if errors.Is(err, fs.ErrNotExist) {
		return props.KeyStep{}, &step.DeferredError{Reason: "waits for the export key"}
	}
	if err != nil {
		return props.KeyStep{}, err
	}
	pk, err := ParsePublicKey(data, time.Now())
	if err != nil {
		return props.KeyStep{}, err
	}
	return k.base(pk.Fingerprint), nil
}

func (k keyProp) Check(ctx context.Context) (bool, error) {
	s, err := k.resolve()
	if err != nil {
		return false, err
	}
	return s.Check(ctx)
}

func (k keyProp) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	s, err := k.resolve()
	if err != nil {
		return nil, nil, err
	}
	return s.Capture(ctx)
}

// Apply writes the value journaled by props.KeyStep's Capture (its "value" field is part of
// the journal format every emrkit release reads).
func (k keyProp) Apply(ctx context.Context, desired json.RawMessage) error {
	var d struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(desired, &d); err != nil || d.Value == "" {
		return fmt.Errorf("journal: PGP_KEY entry has no value (%v)", err)
	}
	return k.base(d.Value).Apply(ctx, desired)
}
