package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// Journal kinds of the firewall steps. Every kind starts with KindPrefix, which is how
// `emrkit firewall` picks its entries out of the journal.
const (
	KindPrefix    = "firewall."
	KindPreflight = "firewall.preflight" // checks only; never journaled
	KindProfile   = "firewall.profile"
	KindRule      = "firewall.rule"
	KindPolicy    = "firewall.policy"
	KindEnable    = "firewall.enable"
)

// Since is the release that introduced the firewall steps; the plan's catalogue and
// `emrkit firewall` must journal the same value.
const Since = "0.2.0"

// Steps returns the firewall steps for cfg, in the order they must run. It is
// StepsContext bounded by a timeout, for callers without a context (the plan).
func Steps(cfg config.Firewall, profile string, env Env, since string) ([]step.Step, error) {
	ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
	defer cancel()
	return StepsContext(ctx, cfg, profile, env, since)
}

// StepsContext returns the firewall steps for cfg, in the order they must run:
//
//  1. preflight: ufw installed and working (iptables usable), SSH port known; it changes
//     nothing and stops the run before any change when something is wrong;
//  2. the application profile (a file; the firewall does not change);
//  3. the SSH allow rules, then HTTPS, then the local-only denies;
//  4. the default policies (deny incoming only once SSH is allowed: if ufw is already
//     active, this is the moment the policy bites);
//  5. enable, last, after checking once more that SSH is allowed.
//
// Undo runs newest first, so ufw is disabled (if emrkit enabled it) and the policies restored
// before the SSH rule goes. cfg.Enable false yields no steps, so a run reverts what an earlier
// one did. In a chroot the whole firewall is one deferred step. Bad configuration is an error
// naming the key.
func StepsContext(ctx context.Context, cfg config.Firewall, profile string, env Env, since string) ([]step.Step, error) {
	if !cfg.Enable {
		return nil, nil
	}
	if cfg.HTTPSPort.N == 0 {
		cfg.HTTPSPort = config.P(DefaultHTTPSPort(profile))
	}
	name, content, err := AppProfile(profile, cfg.HTTPSPort.N)
	if err != nil {
		return nil, err
	}
	if _, err := Rules(cfg, nil); err != nil {
		return nil, err
	}
	if reason := env.chrootReason(ctx); reason != "" {
		return []step.Step{step.Unavailable{
			StepID: KindEnable + ":ufw", StepKind: KindEnable, StepTarget: "ufw", StepSince: since,
			What: "firewall: deny incoming, allow HTTPS and SSH, enable ufw", Reason: reason,
		}}, nil
	}
	det, sshErr := DetectSSH(env.GatherSSH(ctx, cfg.SSHPort.N))
	rules, err := Rules(cfg, det.Ports)
	if err != nil {
		return nil, err
	}
	steps := []step.Step{
		preflightStep{env: env, sshErr: sshErr, since: since},
		profileStep{env: env, name: name, content: content, since: since},
	}
	for _, r := range rules {
		steps = append(steps, ruleStep{env: env, rule: r, since: since})
	}
	steps = append(steps,
		policyStep{env: env, want: Policies{Incoming: "deny", Outgoing: "allow"}, since: since},
		enableStep{env: env, sshPorts: det.Ports, sshErr: sshErr, since: since},
	)
	return steps, nil
}

// HTTPSince is the release that introduced firewall.allow_http.
const HTTPSince = "0.5.0"

// HTTPSteps opens port 80 to everyone when firewall.allow_http says so (certbot's challenges,
// a redirect to HTTPS). They run after StepsContext's: allowing more once ufw is enabled
// cannot lock anyone out, and undo, newest first, closes it before anything else.
func HTTPSteps(ctx context.Context, cfg config.Firewall, env Env, since string) ([]step.Step, error) {
	if !cfg.Enable || !cfg.AllowHTTP {
		return nil, nil
	}
	for i, p := range cfg.Deny {
		if p.N == 80 {
			return nil, fmt.Errorf("firewall.deny[%d]: 80 is opened by firewall.allow_http; a port cannot be both opened and denied", i)
		}
	}
	s := ruleStep{env: env, rule: Rule{Action: Allow, Port: 80, Proto: "tcp", From: Any, Comment: Comment, Purpose: PurposeHTTP}, since: since}
	if reason := env.chrootReason(ctx); reason != "" {
		return []step.Step{step.Unavailable{StepID: s.ID(), StepKind: KindRule, StepTarget: s.Target(), StepSince: since,
			What: s.Describe(), Reason: reason}}, nil
	}
	return []step.Step{s}, nil
}

// Undoers reverses every firewall kind. Those that run ufw refuse in a chroot (an error
// keeps the entry for a later undo) and skip when ufw is no longer installed.
func Undoers(env Env) step.Registry {
	return step.Registry{
		KindProfile: profileUndoer{env},
		KindRule:    ruleUndoer{env},
		KindPolicy:  policyUndoer{env},
		KindEnable:  enableUndoer{env},
	}
}

// UndoCommands says what undoing e would run while the host still holds what emrkit wrote,
// for `emrkit firewall revert --dry-run`.
func UndoCommands(e journal.Entry) ([]string, error) {
	switch e.Kind {
	case KindRule:
		var r Rule
		if err := decodeJSON(e.ID, "desired", e.Desired, &r); err != nil {
			return nil, err
		}
		return []string{ufwCommand(r.DeleteArgs()...)}, nil
	case KindPolicy:
		var want, before Policies
		if err := decodeJSON(e.ID, "desired", e.Desired, &want); err != nil {
			return nil, err
		}
		if err := decodeJSON(e.ID, "before", e.Before, &before); err != nil {
			return nil, err
		}
		return policyCommands(want, before), nil
	case KindEnable:
		var b enableBefore
		if err := decodeJSON(e.ID, "before", e.Before, &b); err != nil {
			return nil, err
		}
		if b.Enabled {
			return nil, nil
		}
		return []string{ufwCommand("disable")}, nil
	case KindProfile:
		var d profileDesired
		var b profileBefore
		if err := decodeJSON(e.ID, "desired", e.Desired, &d); err != nil {
			return nil, err
		}
		if err := decodeJSON(e.ID, "before", e.Before, &b); err != nil {
			return nil, err
		}
		if b.Present {
			return []string{"restore the previous " + d.Path}, nil
		}
		return []string{"rm " + d.Path}, nil
	}
	return nil, fmt.Errorf("%s: kind %q is not a firewall kind", e.ID, e.Kind)
}

func decodeJSON(id, what string, data json.RawMessage, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("journal entry %s: %s state: %w", id, what, err)
	}
	return nil
}

// undoGuard is shared by the undoers that run ufw: a chroot is an error (the entry stays for
// an undo where it is safe), a missing ufw is a skip (purge after ufw was removed).
func undoGuard(ctx context.Context, env Env) (skip string, err error) {
	if reason := env.chrootReason(ctx); reason != "" {
		return "", errors.New(reason)
	}
	if err := env.UFW.Installed(); err != nil {
		return "ufw is no longer installed", nil
	}
	return "", nil
}

// preflightStep stops the run before any change when ufw cannot be used or the SSH port of
// a remote session is unknown. It is always in sync when it passes, so it is never journaled.
type preflightStep struct {
	env    Env
	sshErr error
	since  string
}

func (p preflightStep) Kind() string   { return KindPreflight }
func (p preflightStep) Target() string { return "ufw" }
func (p preflightStep) ID() string     { return KindPreflight + ":ufw" }
func (p preflightStep) Since() string  { return p.since }
func (p preflightStep) Describe() string {
	return "check that ufw and iptables work and the SSH port is known"
}

func (p preflightStep) Check(ctx context.Context) (bool, error) {
	if p.sshErr != nil {
		return false, p.sshErr
	}
	if _, err := p.env.status(ctx); err != nil {
		return false, err
	}
	if _, err := p.env.policies(); err != nil {
		return false, err
	}
	return true, nil
}

var errPreflight = errors.New("firewall preflight changes nothing")

func (p preflightStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	return nil, nil, errPreflight
}

func (p preflightStep) Apply(context.Context, json.RawMessage) error { return errPreflight }

// DefaultHTTPSPort is the EMR's usual HTTPS port: 8443 for OSCAR (Tomcat), 443 for OpenEMR
// (Apache); 0 for an unknown profile.
func DefaultHTTPSPort(profile string) int {
	switch profile {
	case "oscar":
		return 8443
	case "openemr":
		return 443
	}
	return 0
}

// AppProfile returns the name and content of the ufw application profile for the EMR, so
// `ufw app list` shows it and an admin can write rules against it.
func AppProfile(profile string, httpsPort int) (name string, content []byte, err error) {
	var title, desc string
	switch profile {
	case "oscar":
		name, title, desc = "emrkit-oscar", "OSCAR EMR (HTTPS)", "OSCAR EMR web interface, Tomcat over HTTPS"
	case "openemr":
		name, title, desc = "emrkit-openemr", "OpenEMR (HTTPS)", "OpenEMR web interface over HTTPS"
	default:
		return "", nil, fmt.Errorf("profile: %q is not one of oscar, openemr", profile)
	}
	if err := checkPort("firewall.https_port", httpsPort); err != nil {
		return "", nil, err
	}
	var b strings.Builder
	b.WriteString("; ufw application profile written by emrkit; `emrkit firewall revert` removes it.\n")
	fmt.Fprintf(&b, "[%s]\ntitle=%s\ndescription=%s (managed by emrkit)\nports=%d/tcp\n", name, title, desc, httpsPort)
	return name, []byte(b.String()), nil
}
