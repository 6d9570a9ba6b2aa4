package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// policyStep sets ufw's default incoming and outgoing policies (journal kind
// firewall.policy). The routed policy is not emrkit's business and is left alone.
type policyStep struct {
	env   Env
	want  Policies
	since string
}

func (s policyStep) Kind() string   { return KindPolicy }
func (s policyStep) Target() string { return "default" }
func (s policyStep) ID() string     { return KindPolicy + ":default" }
func (s policyStep) Since() string  { return s.since }
func (s policyStep) Describe() string {
	return "default policies: " + strings.Join(policyCommands(Policies{}, s.want), "; ")
}

// policyCommands are the ufw commands that turn from into to.
func policyCommands(from, to Policies) []string {
	var cmds []string
	for _, c := range policyArgs(from, to) {
		cmds = append(cmds, ufwCommand(c...))
	}
	return cmds
}

func policyArgs(from, to Policies) [][]string {
	var args [][]string
	if from.Incoming != to.Incoming {
		args = append(args, []string{"default", to.Incoming, "incoming"})
	}
	if from.Outgoing != to.Outgoing {
		args = append(args, []string{"default", to.Outgoing, "outgoing"})
	}
	return args
}

func validPolicy(p string) bool { return p == "allow" || p == "deny" || p == "reject" }

func (p Policies) validate(id string) error {
	if !validPolicy(p.Incoming) || !validPolicy(p.Outgoing) {
		return fmt.Errorf("journal entry %s: policies %+v are not allow, deny or reject", id, p)
	}
	return nil
}

func (s policyStep) Check(context.Context) (bool, error) {
	cur, err := s.env.policies()
	if err != nil {
		return false, err
	}
	return cur == s.want, nil
}

func (s policyStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	cur, err := s.env.policies()
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(s.want, cur)
}

func (s policyStep) Apply(ctx context.Context, desired json.RawMessage) error {
	var want Policies
	if err := json.Unmarshal(desired, &want); err != nil {
		return fmt.Errorf("firewall policy: desired state: %w", err)
	}
	if err := want.validate(s.ID()); err != nil {
		return err
	}
	cur, err := s.env.policies()
	if err != nil {
		return err
	}
	for _, args := range policyArgs(cur, want) {
		if _, err := s.env.UFW.Run(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// policyUndoer restores each default policy that still reads as emrkit set it. A policy the
// admin changed since is kept. Restoring cannot lock anyone out that emrkit's own deny did not.
type policyUndoer struct{ env Env }

func decodePolicies(e journal.Entry) (want, before Policies, err error) {
	if err = decodeJSON(e.ID, "desired", e.Desired, &want); err != nil {
		return
	}
	if err = decodeJSON(e.ID, "before", e.Before, &before); err != nil {
		return
	}
	if err = want.validate(e.ID); err != nil {
		return
	}
	err = before.validate(e.ID)
	return
}

func (u policyUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	want, before, err := decodePolicies(e)
	if err != nil {
		return 0, "", err
	}
	if skip, err := undoGuard(ctx, u.env); err != nil || skip != "" {
		return step.Skipped, skip, err
	}
	cur, err := u.env.policies()
	if err != nil {
		return 0, "", err
	}
	// Compare-and-swap per direction: restore only what still holds emrkit's value.
	target := cur
	var kept []string
	if cur.Incoming == want.Incoming {
		target.Incoming = before.Incoming
	} else if cur.Incoming != before.Incoming {
		kept = append(kept, fmt.Sprintf("incoming is now %s", cur.Incoming))
	}
	if cur.Outgoing == want.Outgoing {
		target.Outgoing = before.Outgoing
	} else if cur.Outgoing != before.Outgoing {
		kept = append(kept, fmt.Sprintf("outgoing is now %s", cur.Outgoing))
	}
	args := policyArgs(cur, target)
	for _, a := range args {
		if _, err := u.env.UFW.Run(ctx, a...); err != nil {
			return 0, "", err
		}
	}
	switch {
	case len(kept) > 0:
		return step.Kept, strings.Join(kept, ", ") + " (changed since emrkit set it)", nil
	case len(args) == 0:
		return step.AlreadyBefore, "", nil
	}
	return step.Restored, "", nil
}

func (u policyUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	want, _, err := decodePolicies(e)
	if err != nil {
		return false, err
	}
	cur, err := u.env.policies()
	if err != nil {
		return false, nil // ufw's defaults file is gone: emrkit's policy no longer holds
	}
	return cur == want, nil
}
