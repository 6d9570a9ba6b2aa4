package firewall

import (
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
)

func defaultFirewall() config.Firewall { return config.Default().Firewall }

func TestRulesDefault(t *testing.T) {
	rules, err := Rules(defaultFirewall(), []int{2222, 22, 22})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, ufwCommand(r.Args()...)+" ["+string(r.Purpose)+"]")
	}
	want := []string{
		"ufw allow proto tcp from any to any port 22 comment 'emrkit' [ssh]",
		"ufw allow proto tcp from any to any port 2222 comment 'emrkit' [ssh]",
		"ufw allow proto tcp from any to any port 8443 comment 'emrkit' [https]",
		"ufw deny proto tcp from any to any port 3306 comment 'emrkit' [local-only]",
		"ufw deny proto tcp from any to any port 8080 comment 'emrkit' [local-only]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", r.Target(), err)
		}
	}
	if got := rules[0].DeleteArgs(); got[0] != "delete" || !slices.Equal(got[1:], rules[0].Args()) {
		t.Errorf("DeleteArgs = %q", got)
	}
	if rules[2].Target() != "allow 8443/tcp from any" {
		t.Errorf("Target = %q", rules[2].Target())
	}
}

func TestRulesAllowFromCanonical(t *testing.T) {
	cfg := defaultFirewall()
	cfg.AllowFrom = []string{"10.1.2.5/8", "192.0.2.7/32", "198.51.100.9", "2001:db8::1/64", "10.0.0.0/8"}
	rules, err := Rules(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var from []string
	for _, r := range rules {
		if r.Purpose == PurposeHTTPS {
			from = append(from, r.From)
		}
	}
	// ufw stores 10.1.2.5/8 as 10.0.0.0/8 and a /32 as the bare address; it keeps IPv6 host
	// bits, so emrkit clears them itself. Duplicates collapse.
	want := []string{"10.0.0.0/8", "192.0.2.7", "198.51.100.9", "2001:db8::/64"}
	if !slices.Equal(from, want) {
		t.Fatalf("sources %q, want %q", from, want)
	}
}

func TestRulesBadInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Firewall)
		ssh    []int
		want   string
	}{
		{"https not a number", func(c *config.Firewall) { c.HTTPSPort = config.P(-1) }, nil, "firewall.https_port: not a number"},
		{"https 70000", func(c *config.Firewall) { c.HTTPSPort = config.P(70000) }, nil, "firewall.https_port: 70000 is not a port (1-65535)"},
		{"https 0", func(c *config.Firewall) { c.HTTPSPort = config.P(0) }, nil, "firewall.https_port: 0 is not a port"},
		{"ssh 70000", func(c *config.Firewall) { c.SSHPort = config.P(70000) }, nil, "firewall.ssh_port: 70000 is not a port"},
		{"deny 70000", func(c *config.Firewall) { c.Deny = []config.Port{config.P(3306), config.P(70000)} }, nil, "firewall.deny[1]: 70000 is not a port"},
		{"deny abc", func(c *config.Firewall) { c.Deny = []config.Port{config.P(-1)} }, nil, "firewall.deny[0]: not a number"},
		{"cidr /33", func(c *config.Firewall) { c.AllowFrom = []string{"10.0.0.0/33"} }, nil, `firewall.allow_from[0]: "10.0.0.0/33" is not an address or CIDR`},
		{"cidr junk", func(c *config.Firewall) { c.AllowFrom = []string{"10.0.0.0/8", "any; rm -rf /"} }, nil, `firewall.allow_from[1]: "any; rm -rf /"`},
		{"cidr zone", func(c *config.Firewall) { c.AllowFrom = []string{"fe80::1%eth0"} }, nil, `firewall.allow_from[0]`},
		{"deny https", func(c *config.Firewall) { c.Deny = []config.Port{config.P(8443)} }, nil, "firewall.deny[0]: 8443 is also firewall.https_port"},
		{"deny ssh", func(c *config.Firewall) {}, []int{3306}, "firewall.deny[0]: 3306 is the SSH port in use"},
		{"detected ssh bad", func(c *config.Firewall) {}, []int{0}, "SSH port in use (emrkit/ssh-port): 0 is not a port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultFirewall()
			tc.mutate(&cfg)
			_, err := Rules(cfg, tc.ssh)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRuleValidateRejectsTamperedJournal(t *testing.T) {
	good := Rule{Action: Allow, Port: 22, Proto: "tcp", From: Any, Comment: Comment}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Rule{
		{Action: "limit", Port: 22, Proto: "tcp", From: Any, Comment: Comment},
		{Action: Allow, Port: 0, Proto: "tcp", From: Any, Comment: Comment},
		{Action: Allow, Port: 22, Proto: "udp", From: Any, Comment: Comment},
		{Action: Allow, Port: 22, Proto: "tcp", From: "10.1.2.3/8", Comment: Comment},
		{Action: Allow, Port: 22, Proto: "tcp", From: "--force", Comment: Comment},
		{Action: Allow, Port: 22, Proto: "tcp", From: Any, Comment: "admin"},
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", r)
		}
	}
}

func TestConfigLoadNamesKeys(t *testing.T) {
	// The command path: config.Load reports the raw value before firewall sees it.
	for _, tc := range []struct{ yaml, want string }{
		{"firewall: {https_port: abc}\n", `firewall.https_port: "abc" is not a port (1-65535)`},
		{"firewall: {deny: [3306, 70000]}\n", `firewall.deny[1]: "70000" is not a port (1-65535)`},
		{"firewall: {allow_from: [10.0.0.0/33]}\n", `firewall.allow_from[0]: "10.0.0.0/33" is not an address or CIDR`},
	} {
		path := t.TempDir() + "/emrkit.yaml"
		if err := writeFile(path, tc.yaml); err != nil {
			t.Fatal(err)
		}
		_, err := config.Load(path, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
