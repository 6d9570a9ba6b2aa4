package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// ruleBefore is what ufw held for the rule's spec when emrkit captured it.
type ruleBefore struct {
	// Present: emrkit's exact rule was already there (only possible in a race with another
	// writer); undo then leaves it.
	Present bool   `json:"present"`
	Line    string `json:"line,omitempty"`
	// Files are ufw's rule files as they were: on any change ufw rewrites them in its full
	// layout, so deleting the rule alone leaves other bytes than the admin had.
	Files map[string][]byte `json:"files,omitempty"`
}

// ruleStep adds one rule with the emrkit comment (journal kind firewall.rule).
type ruleStep struct {
	env   Env
	rule  Rule
	since string
}

func (s ruleStep) Kind() string   { return KindRule }
func (s ruleStep) Target() string { return s.rule.Target() }
func (s ruleStep) ID() string     { return KindRule + ":" + s.Target() }
func (s ruleStep) Since() string  { return s.since }
func (s ruleStep) Describe() string {
	return fmt.Sprintf("%s rule: %s", s.rule.Purpose, ufwCommand(s.rule.Args()...))
}

// lookup classifies the rules ufw holds with r's spec: one that already does what r does
// (emrkit's or an admin's), or one that does the opposite (a conflict emrkit will not
// resolve by replacing it, since ufw would then hand the admin's rule to emrkit's undo).
func lookup(added []AddedRule, r Rule) (covered, conflict *AddedRule) {
	for i := range added {
		a := &added[i]
		if !a.sameSpec(r) {
			continue
		}
		if a.covers(r) {
			if covered == nil || a.isEmrkits(r) {
				covered = a
			}
		} else if conflict == nil {
			conflict = a
		}
	}
	return covered, conflict
}

func conflictError(r Rule, a *AddedRule) error {
	key := "firewall.https_port / firewall.allow_from"
	switch {
	case r.Action == Deny:
		key = "firewall.deny"
	case r.Purpose == PurposeSSH:
		key = "firewall.ssh_port (emrkit/ssh-port)"
	}
	return fmt.Errorf("ufw already has `ufw %s`, which contradicts emrkit's `%s`; emrkit does not replace a rule "+
		"it did not add: delete it (`ufw delete %s`) or change %s", a.Line, ufwCommand(r.Args()...), a.Line, key)
}

// Check is in sync when a rule with the same spec and effect exists, whoever added it: an
// admin's identical rule is left as it is, and not journaled, so undo never touches it.
func (s ruleStep) Check(ctx context.Context) (bool, error) {
	added, err := s.env.added(ctx)
	if err != nil {
		return false, err
	}
	covered, conflict := lookup(added, s.rule)
	if covered != nil {
		return true, nil
	}
	if conflict != nil {
		return false, conflictError(s.rule, conflict)
	}
	return false, nil
}

func (s ruleStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	if err := s.rule.Validate(); err != nil {
		return nil, nil, err
	}
	added, err := s.env.added(ctx)
	if err != nil {
		return nil, nil, err
	}
	var b ruleBefore
	if covered, _ := lookup(added, s.rule); covered != nil && covered.isEmrkits(s.rule) {
		b = ruleBefore{Present: true, Line: covered.Line}
	}
	if b.Files, err = readRuleFiles(s.env.UserRules); err != nil {
		return nil, nil, err
	}
	return marshalPair(s.rule, b)
}

// Apply adds the journaled rule unless ufw already has it, then checks ufw recorded it.
func (s ruleStep) Apply(ctx context.Context, desired json.RawMessage) error {
	var r Rule
	if err := json.Unmarshal(desired, &r); err != nil {
		return fmt.Errorf("firewall rule: desired state: %w", err)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	added, err := s.env.added(ctx)
	if err != nil {
		return err
	}
	covered, conflict := lookup(added, r)
	switch {
	case covered != nil:
		return nil
	case conflict != nil:
		return conflictError(r, conflict)
	}
	out, err := s.env.UFW.Run(ctx, r.Args()...)
	if err != nil {
		return err
	}
	added, err = s.env.added(ctx)
	if err != nil {
		return err
	}
	if c, _ := lookup(added, r); c == nil || !c.isEmrkits(r) {
		return fmt.Errorf("ufw did not record `%s` (it said: %s)", ufwCommand(r.Args()...), strings.Join(strings.Fields(out), " "))
	}
	return nil
}

// ruleUndoer deletes the rule emrkit added, with its comment, so ufw itself refuses to
// delete anything but emrkit's rule.
type ruleUndoer struct{ env Env }

func decodeRule(e journal.Entry) (Rule, ruleBefore, error) {
	var r Rule
	var b ruleBefore
	if err := decodeJSON(e.ID, "desired", e.Desired, &r); err != nil {
		return r, b, err
	}
	if len(e.Before) > 0 {
		if err := decodeJSON(e.ID, "before", e.Before, &b); err != nil {
			return r, b, err
		}
	}
	if err := r.Validate(); err != nil {
		return r, b, fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	return r, b, nil
}

func (u ruleUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	r, b, err := decodeRule(e)
	if err != nil {
		return 0, "", err
	}
	if skip, err := undoGuard(ctx, u.env); err != nil || skip != "" {
		return step.Skipped, skip, err
	}
	added, err := u.env.added(ctx)
	if err != nil {
		return 0, "", err
	}
	var mine, others []AddedRule
	for _, a := range added {
		switch {
		case a.isEmrkits(r):
			mine = append(mine, a)
		case a.sameSpec(r):
			others = append(others, a)
		}
	}
	switch {
	case len(mine) > 0 && b.Present:
		return step.AlreadyBefore, "the same emrkit rule was there before", nil
	case len(mine) == 0 && len(others) == 0:
		return step.AlreadyBefore, "", nil
	case len(mine) == 0:
		return step.Kept, fmt.Sprintf("ufw now has `ufw %s` instead (changed since emrkit added it)", others[0].Line), nil
	}
	if _, err := u.env.UFW.Run(ctx, r.DeleteArgs()...); err != nil {
		return 0, "", err
	}
	after, err := u.env.added(ctx)
	if err != nil {
		return 0, "", err
	}
	for _, a := range after {
		if a.isEmrkits(r) {
			return 0, "", fmt.Errorf("`%s` left the rule in place", ufwCommand(r.DeleteArgs()...))
		}
	}
	if err := restoreRuleFiles(b.Files); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

// Holds reports whether ufw still has emrkit's rule.
func (u ruleUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	r, _, err := decodeRule(e)
	if err != nil {
		return false, err
	}
	if u.env.UFW.Installed() != nil {
		return false, nil
	}
	added, err := u.env.added(ctx)
	if err != nil {
		return false, err
	}
	for _, a := range added {
		if a.isEmrkits(r) {
			return true, nil
		}
	}
	return false, nil
}

func marshalPair(desired, before any) (json.RawMessage, json.RawMessage, error) {
	d, err := json.Marshal(desired)
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(before)
	return d, b, err
}
