package firewall

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

type enableDesired struct {
	Enabled  bool  `json:"enabled"`
	SSHPorts []int `json:"ssh_ports"`
}

type enableBefore struct {
	Enabled bool `json:"enabled"`
}

// enableStep turns ufw on, last, and only once every SSH port in use is allowed (journal
// kind firewall.enable).
type enableStep struct {
	env      Env
	sshPorts []int
	sshErr   error
	since    string
}

func (s enableStep) Kind() string   { return KindEnable }
func (s enableStep) Target() string { return "ufw" }
func (s enableStep) ID() string     { return KindEnable + ":ufw" }
func (s enableStep) Since() string  { return s.since }
func (s enableStep) Describe() string {
	return fmt.Sprintf("enable the firewall once SSH %v is allowed: %s", s.sshPorts, ufwCommand("--force", "enable"))
}

func (s enableStep) Check(ctx context.Context) (bool, error) {
	st, err := s.env.status(ctx)
	if err != nil {
		return false, err
	}
	return st.Active, nil
}

func (s enableStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	st, err := s.env.status(ctx)
	if err != nil {
		return nil, nil, err
	}
	return marshalPair(enableDesired{Enabled: true, SSHPorts: s.sshPorts}, enableBefore{Enabled: st.Active})
}

// Apply is the SSH lock-out guard: it re-reads ufw's rules and refuses unless each SSH port
// in use is open to everyone (by emrkit's rule or the admin's), then enables ufw. --force
// only skips ufw's interactive "may disrupt existing ssh connections" question, which this
// check answers.
func (s enableStep) Apply(ctx context.Context, desired json.RawMessage) error {
	if s.sshErr != nil {
		return s.sshErr
	}
	var d enableDesired
	if err := json.Unmarshal(desired, &d); err != nil {
		return fmt.Errorf("firewall enable: desired state: %w", err)
	}
	ports := sortedUnique(append(d.SSHPorts, s.sshPorts...))
	added, err := s.env.added(ctx)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if err := checkPort("SSH port", p); err != nil {
			return err
		}
		ok := false
		for _, a := range added {
			ok = ok || a.allowsSSH(p)
		}
		if !ok {
			return fmt.Errorf("refusing to enable ufw: no rule allows SSH port %d/tcp yet, enabling would lock the admin out "+
				"(check firewall.ssh_port / emrkit/ssh-port and run `emrkit firewall apply` again)", p)
		}
	}
	if _, err := s.env.UFW.Run(ctx, "--force", "enable"); err != nil {
		return err
	}
	st, err := s.env.status(ctx)
	if err != nil {
		return err
	}
	if !st.Active {
		return fmt.Errorf("`ufw --force enable` succeeded but `ufw status` still says inactive")
	}
	return nil
}

// enableUndoer disables ufw only when emrkit enabled it and it is still on. A firewall that
// was on before emrkit stays on. Disabling cannot lock anyone out.
type enableUndoer struct{ env Env }

func (u enableUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	var b enableBefore
	if err := decodeJSON(e.ID, "before", e.Before, &b); err != nil {
		return 0, "", err
	}
	if b.Enabled {
		return step.AlreadyBefore, "ufw was enabled before emrkit; it stays enabled", nil
	}
	if skip, err := undoGuard(ctx, u.env); err != nil || skip != "" {
		return step.Skipped, skip, err
	}
	st, err := u.env.status(ctx)
	if err != nil {
		return 0, "", err
	}
	if !st.Active {
		return step.AlreadyBefore, "", nil
	}
	if _, err := u.env.UFW.Run(ctx, "disable"); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

func (u enableUndoer) Holds(ctx context.Context, _ journal.Entry) (bool, error) {
	if u.env.UFW.Installed() != nil {
		return false, nil
	}
	st, err := u.env.status(ctx)
	if err != nil {
		return false, err
	}
	return st.Active, nil
}
