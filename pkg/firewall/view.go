package firewall

import (
	"context"
	"strconv"
	"strings"
)

// View is what ufw says of the host, for reports (emrkit doctor); reading it changes nothing.
type View struct {
	Active bool
	// Incoming is the default incoming policy (allow, deny, reject).
	Incoming string
	// Rules are ufw's own record of its rules, in the order ufw applies them.
	Rules []AddedRule
}

// View reads ufw's state: `ufw status`, `ufw show added` and the default policies.
func (e Env) View(ctx context.Context) (View, error) {
	st, err := e.status(ctx)
	if err != nil {
		return View{}, err
	}
	rules, err := e.added(ctx)
	if err != nil {
		return View{}, err
	}
	pol, err := e.policies()
	if err != nil {
		return View{}, err
	}
	return View{Active: st.Active, Incoming: pol.Incoming, Rules: rules}, nil
}

// Verdict is what the firewall does with incoming TCP to port: the action of the first rule
// that matches it from some source (allow, limit, deny, reject) and that rule, or the
// default policy and "" when none does. An inactive firewall allows everything.
func (v View) Verdict(port int) (action, rule string) {
	if !v.Active {
		return "allow", ""
	}
	for _, r := range v.Rules {
		if r.Unparsed || r.Route || r.Out || r.ToApp != "" || (r.Proto != "" && r.Proto != "tcp") || !portIn(port, r.ToPort) {
			continue
		}
		return r.Action, r.Line
	}
	return v.Incoming, ""
}

// portIn reports whether port is in ufw's port spec ("22", "80,443", "6000:6007"; "" = any).
func portIn(port int, spec string) bool {
	if spec == "" {
		return true
	}
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && port >= l && port <= h {
			return true
		}
	}
	return false
}
