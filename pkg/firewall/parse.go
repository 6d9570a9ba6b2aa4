package firewall

import (
	"fmt"
	"regexp"
	"strings"
)

// This file parses what ufw prints. emrkit reads the rules ufw has recorded from
// `ufw show added`: unlike `ufw status` it works while ufw is disabled, lists each rule once
// (not once per IP version) and prints it in ufw's own command syntax (parser.get_command in
// ufw 0.36), which is regular enough to parse exactly. Policies are read from
// /etc/default/ufw, because `ufw status verbose` shows them only while ufw is active.

// Status is the part of `ufw status [verbose]` emrkit uses.
type Status struct {
	Active bool
	// Incoming, Outgoing and Routed are the default policies; `ufw status verbose` prints
	// them only while the firewall is active.
	Incoming, Outgoing, Routed string
}

var defaultLine = regexp.MustCompile(`^Default: (\S+) \(incoming\), (\S+) \(outgoing\), (\S+) \(routed\)`)

// ParseStatus reads `ufw status` or `ufw status verbose` output (LC_ALL=C).
func ParseStatus(out string) (Status, error) {
	var st Status
	found := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "Status: active":
			st.Active, found = true, true
		case line == "Status: inactive":
			st.Active, found = false, true
		default:
			if m := defaultLine.FindStringSubmatch(line); m != nil {
				st.Incoming, st.Outgoing, st.Routed = m[1], m[2], m[3]
			}
		}
	}
	if !found {
		return st, fmt.Errorf("unexpected `ufw status` output (no \"Status:\" line): %q", firstLine(out))
	}
	return st, nil
}

// AddedRule is one line of `ufw show added`, split into ufw's rule fields. Fields ufw leaves
// out are "" except From and To, which are Any.
type AddedRule struct {
	Line     string // as printed, without the leading "ufw "
	Route    bool
	Action   string // allow, deny, reject or limit
	Out      bool   // direction out
	Log      string // "", "log" or "log-all"
	InIface  string
	OutIface string
	From     string
	FromPort string
	FromApp  string
	To       string
	ToPort   string
	ToApp    string
	Proto    string // "" = any protocol
	Comment  string
	// Unparsed is set when the line does not follow ufw's grammar as emrkit knows it. Such a
	// line never matches an emrkit rule.
	Unparsed bool
}

const addedHeader = "Added user rules"

// ParseAdded reads `ufw show added` output (LC_ALL=C).
func ParseAdded(out string) ([]AddedRule, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], addedHeader) {
		return nil, fmt.Errorf("unexpected `ufw show added` output (no %q header): %q", addedHeader, firstLine(out))
	}
	var rules []AddedRule
	for _, line := range lines[1:] {
		line = strings.TrimSpace(line)
		if line == "" || line == "(None)" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "ufw ")
		if !ok {
			return nil, fmt.Errorf("unexpected line in `ufw show added` output: %q", line)
		}
		r, err := parseAddedRule(rest)
		if err != nil {
			r = AddedRule{Line: rest, Unparsed: true}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseAddedRule(line string) (AddedRule, error) {
	r := AddedRule{Line: line, From: Any, To: Any}
	body := line
	if before, after, ok := strings.Cut(body, " comment '"); ok {
		if c, closed := strings.CutSuffix(after, "'"); closed { // not the opening quote itself
			r.Comment, body = c, before
		}
	}
	tok, err := tokens(body)
	if err != nil {
		return r, err
	}
	next := func() (string, bool) {
		if len(tok) == 0 {
			return "", false
		}
		t := tok[0]
		tok = tok[1:]
		return t, true
	}
	t, _ := next()
	if t == "route" {
		r.Route = true
		t, _ = next()
	}
	switch t {
	case "allow", "deny", "reject", "limit":
		r.Action = t
	default:
		return r, fmt.Errorf("unknown action %q", t)
	}
	extended := false
	for len(tok) > 0 {
		t, _ := next()
		switch t {
		case "in", "out":
			if len(tok) > 1 && tok[0] == "on" {
				next()
				iface, _ := next()
				if iface == "" {
					return r, fmt.Errorf("%q on no interface", t)
				}
				if t == "in" {
					r.InIface = iface
				} else {
					// "out on X" alone is an outgoing rule (ufw prints no "out" then); after
					// "in on Y" it is a route rule's way out.
					r.OutIface, r.Out = iface, r.InIface == ""
				}
				extended = true
			} else if t == "out" {
				r.Out = true
			}
		case "log", "log-all":
			r.Log = t
		case "from", "to":
			extended = true
			loc, ok := next()
			if !ok || loc == "" { // '' is no address
				return r, fmt.Errorf("%q without an address", t)
			}
			var port, app string
			if len(tok) > 1 && (tok[0] == "port" || tok[0] == "app") {
				kw, _ := next()
				v, _ := next()
				if kw == "port" {
					port = v
				} else {
					app = v
				}
			}
			if t == "from" {
				r.From, r.FromPort, r.FromApp = loc, port, app
			} else {
				r.To, r.ToPort, r.ToApp = loc, port, app
			}
		case "proto":
			p, ok := next()
			if !ok {
				return r, fmt.Errorf("proto without a protocol")
			}
			r.Proto = p
		default:
			// Short syntax: PORT[/PROTO] or an application name.
			if extended || r.ToPort != "" || r.ToApp != "" {
				return r, fmt.Errorf("unexpected %q", t)
			}
			if m := shortPort.FindStringSubmatch(t); m != nil {
				r.ToPort, r.Proto = m[1], m[2]
			} else {
				r.ToApp = t
			}
		}
	}
	return r, nil
}

var shortPort = regexp.MustCompile(`^([0-9][0-9,:]*)(?:/([a-z0-9]+))?$`)

// tokens splits on blanks, keeping 'quoted words' (application names with spaces) whole.
func tokens(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '\'' {
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			out = append(out, s[1:end+1])
			s = s[end+2:]
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out, nil
}

// sameSpec reports whether ufw would treat a as the same rule as r apart from action, log
// type and comment (ufw's UFWRule.match returning -1, -2 or 0). Adding r over such a rule
// would replace it, so emrkit must not.
func (a AddedRule) sameSpec(r Rule) bool {
	return !a.Unparsed && !a.Route && !a.Out && a.InIface == "" && a.OutIface == "" &&
		a.FromPort == "" && a.FromApp == "" && a.ToApp == "" && a.To == Any &&
		a.ToPort == fmt.Sprint(r.Port) && a.Proto == r.Proto && sameSource(a.From, r.From)
}

// isEmrkits reports whether a is exactly the rule emrkit adds for r.
func (a AddedRule) isEmrkits(r Rule) bool {
	return a.sameSpec(r) && a.Action == string(r.Action) && a.Log == "" && a.Comment == Comment
}

// covers reports whether a, a rule with r's spec, already does what r would: an admin's
// `limit` covers emrkit's allow, a `reject` covers its deny.
func (a AddedRule) covers(r Rule) bool {
	switch r.Action {
	case Allow:
		return a.Action == "allow" || a.Action == "limit"
	case Deny:
		return a.Action == "deny" || a.Action == "reject"
	}
	return false
}

// allowsSSH reports whether a lets anyone reach TCP port p: what the lock-out guard needs
// before ufw is enabled.
func (a AddedRule) allowsSSH(p int) bool {
	return !a.Unparsed && !a.Route && !a.Out && a.InIface == "" && a.FromApp == "" && a.ToApp == "" &&
		a.FromPort == "" && a.From == Any && a.To == Any && a.ToPort == fmt.Sprint(p) &&
		(a.Proto == "tcp" || a.Proto == "") && (a.Action == "allow" || a.Action == "limit")
}

// Policies are ufw's default incoming and outgoing policies, in ufw's words (allow, deny,
// reject).
type Policies struct {
	Incoming string `json:"incoming"`
	Outgoing string `json:"outgoing"`
}

var policyWord = map[string]string{"ACCEPT": "allow", "DROP": "deny", "REJECT": "reject"}

// ParseDefaults reads DEFAULT_INPUT_POLICY and DEFAULT_OUTPUT_POLICY from /etc/default/ufw.
func ParseDefaults(content string) (Policies, error) {
	var p Policies
	for _, line := range strings.Split(content, "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		switch key {
		case "DEFAULT_INPUT_POLICY", "DEFAULT_OUTPUT_POLICY":
			w, ok := policyWord[val]
			if !ok {
				return p, fmt.Errorf("%s=%q is not ACCEPT, DROP or REJECT", key, val)
			}
			if key == "DEFAULT_INPUT_POLICY" {
				p.Incoming = w
			} else {
				p.Outgoing = w
			}
		}
	}
	if p.Incoming == "" || p.Outgoing == "" {
		return p, fmt.Errorf("no DEFAULT_INPUT_POLICY or DEFAULT_OUTPUT_POLICY")
	}
	return p, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
