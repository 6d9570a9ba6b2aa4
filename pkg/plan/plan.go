// Package plan owns emrkit's desired state: it turns the configuration and what is found on
// the host into the ordered steps of one release. The catalogue below is data, in the order
// steps run; each item names the release that introduced it, and a binary built as version V
// plans only items with since <= V, so any older release can be rebuilt from this tree.
package plan

import (
	"fmt"
	"os"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/debversion"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
)

// Host is what the plan reads from the machine, kept apart so tests can point it elsewhere.
type Host struct {
	// PropertiesCandidates are probed, in order, when oscar.properties is not configured.
	PropertiesCandidates []string
}

// DefaultHost probes where Debian's OSCAR packages put oscar.properties (Tomcat 9, 8, 7).
func DefaultHost() Host {
	return Host{PropertiesCandidates: []string{
		"/usr/share/tomcat9/oscar.properties",
		"/usr/share/tomcat8/oscar.properties",
		"/usr/share/tomcat7/oscar.properties",
	}}
}

// item is one entry of the catalogue.
type item struct {
	since string
	build func(cfg config.Config, h Host, since string) ([]step.Step, error)
}

// catalogue lists every step emrkit knows, in run order.
var catalogue = []item{
	{since: "0.1.0", build: oscarProperty("TOTP", "1")},
}

// Build returns the steps of release version for cfg, in order.
func Build(cfg config.Config, h Host, version string) ([]step.Step, error) {
	var steps []step.Step
	for _, it := range catalogue {
		ok, err := debversion.AtMost(it.since, version)
		if err != nil {
			return nil, fmt.Errorf("plan for version %s: %w", version, err)
		}
		if !ok {
			continue
		}
		s, err := it.build(cfg, h, it.since)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s...)
	}
	return steps, nil
}

// Undoers knows every kind any release journals, whatever the version: undo must work for
// entries this binary's own plan no longer makes.
func Undoers() step.Registry {
	return step.Registry{
		props.Kind: props.Undoer{},
	}
}

// oscarProperty sets key=value in oscar.properties for the OSCAR profile.
func oscarProperty(key, value string) func(config.Config, Host, string) ([]step.Step, error) {
	return func(cfg config.Config, h Host, since string) ([]step.Step, error) {
		if cfg.Profile != "oscar" {
			return nil, nil
		}
		path, found := propertiesPath(cfg, h)
		s := props.KeyStep{Path: path, Key: key, Value: value, SinceVersion: since}
		if err := s.Validate(); err != nil {
			return nil, err
		}
		if !found {
			return []step.Step{step.Unavailable{
				StepID: props.Kind + ":oscar.properties#" + key, StepKind: props.Kind,
				StepTarget: "oscar.properties#" + key, StepSince: since,
				What:   fmt.Sprintf("set %s=%s in oscar.properties", key, value),
				Reason: "OSCAR is not installed (no oscar.properties found); run `emrkit apply` after installing it",
			}}, nil
		}
		return []step.Step{s}, nil
	}
}

// propertiesPath returns the configured file, or the first candidate that exists. A
// configured file is used as given, so a wrong path is an error rather than a deferral.
func propertiesPath(cfg config.Config, h Host) (string, bool) {
	if cfg.OSCAR.Properties != "" {
		return cfg.OSCAR.Properties, true
	}
	for _, c := range h.PropertiesCandidates {
		if _, err := os.Stat(c); err == nil {
			return c, true
		}
	}
	return "", false
}
