package firewall

import (
	"strings"
	"testing"
)

// The outputs under testdata/ufw were captured from ufw 0.36.2 (Debian 12) inside a network
// namespace with a private /etc/ufw (see testdata/nsrun.sh).

func TestParseAdded(t *testing.T) {
	rules, err := ParseAdded(readTestdata(t, "ufw/show-added.txt"))
	if err != nil {
		t.Fatal(err)
	}
	byLine := map[string]AddedRule{}
	for _, r := range rules {
		if r.Unparsed {
			t.Errorf("unparsed: %q", r.Line)
		}
		byLine[r.Line] = r
	}
	want := map[string]AddedRule{
		"allow 22/tcp":                                                        {Action: "allow", From: Any, To: Any, ToPort: "22", Proto: "tcp"},
		"allow 8443/tcp comment 'emrkit'":                                     {Action: "allow", From: Any, To: Any, ToPort: "8443", Proto: "tcp", Comment: "emrkit"},
		"deny 3306/tcp comment 'emrkit'":                                      {Action: "deny", From: Any, To: Any, ToPort: "3306", Proto: "tcp", Comment: "emrkit"},
		"reject 8080/tcp comment 'admin rule'":                                {Action: "reject", From: Any, To: Any, ToPort: "8080", Proto: "tcp", Comment: "admin rule"},
		"allow from 10.0.0.0/8 to any port 8443 proto tcp comment 'emrkit'":   {Action: "allow", From: "10.0.0.0/8", To: Any, ToPort: "8443", Proto: "tcp", Comment: "emrkit"},
		"allow from 192.0.2.0/24 to any port 2222 proto tcp comment 'office'": {Action: "allow", From: "192.0.2.0/24", To: Any, ToPort: "2222", Proto: "tcp", Comment: "office"},
		"allow log 2223/tcp":                                                  {Action: "allow", Log: "log", From: Any, To: Any, ToPort: "2223", Proto: "tcp"},
		"allow in on eth0 to any port 80 proto tcp":                           {Action: "allow", InIface: "eth0", From: Any, To: Any, ToPort: "80", Proto: "tcp"},
		"route allow in on eth0 out on eth1 to 10.0.0.5 port 80 proto tcp":    {Route: true, Action: "allow", InIface: "eth0", OutIface: "eth1", From: Any, To: "10.0.0.5", ToPort: "80", Proto: "tcp"},
		"limit 2200/tcp comment 'x'":                                          {Action: "limit", From: Any, To: Any, ToPort: "2200", Proto: "tcp", Comment: "x"},
		"allow 60000:61000/udp":                                               {Action: "allow", From: Any, To: Any, ToPort: "60000:61000", Proto: "udp"},
		"allow 80,443/tcp":                                                    {Action: "allow", From: Any, To: Any, ToPort: "80,443", Proto: "tcp"},
		"deny out 25/tcp":                                                     {Action: "deny", Out: true, From: Any, To: Any, ToPort: "25", Proto: "tcp"},
		"allow WWW":                                                           {Action: "allow", From: Any, To: Any, ToApp: "WWW"},
		"allow 'WWW Full'":                                                    {Action: "allow", From: Any, To: Any, ToApp: "WWW Full"},
		"allow 53":                                                            {Action: "allow", From: Any, To: Any, ToPort: "53"},
		"allow from 10.1.2.3 to any port 5432 proto tcp comment 'db: it is fine'": {Action: "allow", From: "10.1.2.3", To: Any, ToPort: "5432", Proto: "tcp", Comment: "db: it is fine"},
		"allow from 2001:db8::/32 to any port 443 proto tcp":                      {Action: "allow", From: "2001:db8::/32", To: Any, ToPort: "443", Proto: "tcp"},
	}
	if len(rules) != len(want) {
		t.Errorf("parsed %d rules, want %d", len(rules), len(want))
	}
	for line, w := range want {
		got, ok := byLine[line]
		if !ok {
			t.Errorf("missing %q", line)
			continue
		}
		w.Line = line
		if got != w {
			t.Errorf("%q:\n got %+v\nwant %+v", line, got, w)
		}
	}
}

func TestParseAddedNoneAndGarbage(t *testing.T) {
	rules, err := ParseAdded(readTestdata(t, "ufw/show-added-none.txt"))
	if err != nil || len(rules) != 0 {
		t.Fatalf("none: %v, %v", rules, err)
	}
	if _, err := ParseAdded("ERROR: Couldn't determine iptables version\n"); err == nil {
		t.Error("garbage accepted")
	}
	rules, err = ParseAdded(addedHeader + " (see 'ufw status' for running firewall):\nufw frobnicate 22/tcp\n")
	if err != nil || len(rules) != 1 || !rules[0].Unparsed {
		t.Fatalf("unknown action: %+v, %v", rules, err)
	}
	if rules[0].sameSpec(Rule{Action: Allow, Port: 22, Proto: "tcp", From: Any, Comment: Comment}) {
		t.Error("an unparsed line matched a rule")
	}
}

func rule(a Action, port int, from string) Rule {
	return Rule{Action: a, Port: port, Proto: "tcp", From: from, Comment: Comment}
}

// TestLookup pins the decisions that keep an admin's rule out of emrkit's undo.
func TestLookup(t *testing.T) {
	added, err := ParseAdded(readTestdata(t, "ufw/show-added.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		r                 Rule
		covered, conflict string
		emrkits           bool
	}{
		{rule(Allow, 8443, Any), "allow 8443/tcp comment 'emrkit'", "", true},
		{rule(Allow, 8443, "10.0.0.0/8"), "allow from 10.0.0.0/8 to any port 8443 proto tcp comment 'emrkit'", "", true},
		{rule(Allow, 22, Any), "allow 22/tcp", "", false},                          // the admin's: in sync, not emrkit's
		{rule(Deny, 8080, Any), "reject 8080/tcp comment 'admin rule'", "", false}, // reject covers deny
		{rule(Allow, 2200, Any), "limit 2200/tcp comment 'x'", "", false},          // limit covers allow
		{rule(Allow, 3306, Any), "", "deny 3306/tcp comment 'emrkit'", false},      // opposite action
		{rule(Allow, 2222, Any), "", "", false},                                    // only from 192.0.2.0/24
		{rule(Allow, 53, Any), "", "", false},                                      // 53 is any protocol, a different rule
		{rule(Allow, 2223, Any), "allow log 2223/tcp", "", false},
		{rule(Allow, 80, Any), "", "", false}, // only on eth0
		{rule(Allow, 5432, "10.1.2.3"), "allow from 10.1.2.3 to any port 5432 proto tcp comment 'db: it is fine'", "", false},
	}
	for _, tc := range tests {
		covered, conflict := lookup(added, tc.r)
		line := func(a *AddedRule) string {
			if a == nil {
				return ""
			}
			return a.Line
		}
		if line(covered) != tc.covered || line(conflict) != tc.conflict {
			t.Errorf("%s: covered %q conflict %q, want %q %q", tc.r.Target(), line(covered), line(conflict), tc.covered, tc.conflict)
		}
		if covered != nil && covered.isEmrkits(tc.r) != tc.emrkits {
			t.Errorf("%s: isEmrkits = %v", tc.r.Target(), !tc.emrkits)
		}
	}
	if err := conflictError(rule(Deny, 3306, Any), &AddedRule{Line: "allow 3306/tcp"}); !strings.Contains(err.Error(), "firewall.deny") ||
		!strings.Contains(err.Error(), "ufw delete allow 3306/tcp") {
		t.Errorf("conflict message: %v", err)
	}
}

func TestAllowsSSH(t *testing.T) {
	added, err := ParseAdded(readTestdata(t, "ufw/show-added.txt"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(p int) bool {
		for _, a := range added {
			if a.allowsSSH(p) {
				return true
			}
		}
		return false
	}
	for p, want := range map[int]bool{22: true, 2200: true, 53: true, 2222: false, 3306: false, 80: false, 2223: true} {
		if got := allowed(p); got != want {
			t.Errorf("allowsSSH(%d) = %v, want %v", p, got, want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	for file, want := range map[string]Status{
		"ufw/status-inactive.txt":       {},
		"ufw/status-active.txt":         {Active: true},
		"ufw/status-numbered.txt":       {Active: true},
		"ufw/status-verbose-active.txt": {Active: true, Incoming: "deny", Outgoing: "allow", Routed: "disabled"},
	} {
		got, err := ParseStatus(readTestdata(t, file))
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", file, got, err, want)
		}
	}
	if _, err := ParseStatus("ERROR: problem running iptables\n"); err == nil {
		t.Error("garbage accepted")
	}
}

func TestParseDefaults(t *testing.T) {
	p, err := ParseDefaults(readTestdata(t, "default-ufw.txt"))
	if err != nil || p != (Policies{Incoming: "deny", Outgoing: "allow"}) {
		t.Fatalf("%+v, %v", p, err)
	}
	p, err = ParseDefaults("DEFAULT_INPUT_POLICY=ACCEPT\nDEFAULT_OUTPUT_POLICY='REJECT'\n")
	if err != nil || p != (Policies{Incoming: "allow", Outgoing: "reject"}) {
		t.Fatalf("%+v, %v", p, err)
	}
	if _, err := ParseDefaults("DEFAULT_INPUT_POLICY=\"QUEUE\"\nDEFAULT_OUTPUT_POLICY=ACCEPT\n"); err == nil {
		t.Error("QUEUE accepted")
	}
	if _, err := ParseDefaults("# nothing\n"); err == nil {
		t.Error("empty accepted")
	}
}
