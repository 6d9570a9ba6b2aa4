package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
)

// Action is what a rule does with a matching incoming connection.
type Action string

const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// Comment marks every rule emrkit adds. ufw deletes a rule given with a comment only when the
// stored comment is exactly the same, which makes `ufw delete ... comment 'emrkit'` a
// compare-and-swap that cannot remove an admin's rule for the same port.
const Comment = "emrkit"

// Any is the source of a rule that matches every address.
const Any = "any"

// Purpose says why emrkit wants a rule, for humans; it is not part of the rule's identity.
type Purpose string

const (
	PurposeSSH       Purpose = "ssh"
	PurposeHTTPS     Purpose = "https"
	PurposeLocalOnly Purpose = "local-only"
	PurposeHTTP      Purpose = "http"
)

// Rule is one incoming rule emrkit manages, in the form it is journaled.
type Rule struct {
	Action Action `json:"action"`
	Port   int    `json:"port"`
	Proto  string `json:"proto"`
	// From is Any or an address or CIDR in the canonical form ufw stores and prints
	// (host bits cleared, a single host without a prefix length).
	From    string  `json:"from"`
	Comment string  `json:"comment"`
	Purpose Purpose `json:"purpose,omitempty"`
}

// Validate rejects anything that must not reach ufw's argv, including rules read back from a
// journal that was edited by hand.
func (r Rule) Validate() error {
	if r.Action != Allow && r.Action != Deny {
		return fmt.Errorf("firewall rule: action %q is not allow or deny", r.Action)
	}
	if err := checkPort("firewall rule port", r.Port); err != nil {
		return err
	}
	if r.Proto != "tcp" {
		return fmt.Errorf("firewall rule: protocol %q is not tcp", r.Proto)
	}
	if r.From != Any {
		c, err := canonicalSource(r.From)
		if err != nil || c != r.From {
			return fmt.Errorf("firewall rule: source %q is not a canonical address or CIDR", r.From)
		}
	}
	if r.Comment != Comment {
		return fmt.Errorf("firewall rule: comment %q is not %q", r.Comment, Comment)
	}
	return nil
}

// Args is the ufw argv (without the program) that adds the rule. The extended syntax is
// used for every rule so the same spec, prefixed with "delete", removes it.
func (r Rule) Args() []string {
	return []string{string(r.Action), "proto", r.Proto, "from", r.From, "to", "any",
		"port", strconv.Itoa(r.Port), "comment", r.Comment}
}

// DeleteArgs is the ufw argv that deletes exactly this rule (and only with its comment).
func (r Rule) DeleteArgs() []string { return append([]string{"delete"}, r.Args()...) }

// Target names the rule in journal IDs: "allow 8443/tcp from any".
func (r Rule) Target() string {
	return fmt.Sprintf("%s %d/%s from %s", r.Action, r.Port, r.Proto, r.From)
}

// Rules turns the firewall configuration and the SSH ports in use into the rules emrkit
// manages, in the order they must be added: SSH first (so a remote admin keeps access
// whatever happens next), then HTTPS, then the local-only denies. It is pure: every error
// names the configuration key and what would fit.
func Rules(cfg config.Firewall, sshPorts []int) ([]Rule, error) {
	if err := checkPort("firewall.https_port", cfg.HTTPSPort.N); err != nil {
		return nil, err
	}
	if cfg.SSHPort.N != 0 {
		if err := checkPort("firewall.ssh_port", cfg.SSHPort.N); err != nil {
			return nil, err
		}
	}
	for _, p := range sshPorts {
		if err := checkPort("SSH port in use (emrkit/ssh-port)", p); err != nil {
			return nil, err
		}
	}
	sources := []string{Any}
	if len(cfg.AllowFrom) > 0 {
		sources = sources[:0]
		for i, a := range cfg.AllowFrom {
			c, err := canonicalSource(a)
			if err != nil {
				return nil, fmt.Errorf("firewall.allow_from[%d]: %q is not an address or CIDR (e.g. 10.0.0.0/24): %v", i, a, err)
			}
			sources = append(sources, c)
		}
	}
	isSSH := map[int]bool{}
	for _, p := range sshPorts {
		isSSH[p] = true
	}
	for i, p := range cfg.Deny {
		if err := checkPort(fmt.Sprintf("firewall.deny[%d]", i), p.N); err != nil {
			return nil, err
		}
		if p.N == cfg.HTTPSPort.N {
			return nil, fmt.Errorf("firewall.deny[%d]: %d is also firewall.https_port; a port cannot be both opened and denied", i, p.N)
		}
		if isSSH[p.N] {
			return nil, fmt.Errorf("firewall.deny[%d]: %d is the SSH port in use; denying it would lock the admin out (remove it from firewall.deny)", i, p.N)
		}
	}

	var rules []Rule
	seen := map[string]bool{}
	add := func(r Rule) {
		if !seen[r.Target()] {
			seen[r.Target()] = true
			rules = append(rules, r)
		}
	}
	for _, p := range sortedUnique(sshPorts) {
		add(Rule{Action: Allow, Port: p, Proto: "tcp", From: Any, Comment: Comment, Purpose: PurposeSSH})
	}
	for _, src := range sources {
		add(Rule{Action: Allow, Port: cfg.HTTPSPort.N, Proto: "tcp", From: src, Comment: Comment, Purpose: PurposeHTTPS})
	}
	for _, p := range cfg.Deny {
		add(Rule{Action: Deny, Port: p.N, Proto: "tcp", From: Any, Comment: Comment, Purpose: PurposeLocalOnly})
	}
	return rules, nil
}

// checkPort names key in the error. config.Port decodes a non-number as -1.
func checkPort(key string, n int) error {
	if n == -1 {
		return fmt.Errorf("%s: not a number (a port is 1-65535)", key)
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("%s: %d is not a port (1-65535)", key, n)
	}
	return nil
}

// canonicalSource parses an address or CIDR with net/netip and returns it as ufw stores it:
// host bits cleared (ufw clears them for IPv4 but not IPv6, so emrkit always does) and a
// single host without its prefix length.
func canonicalSource(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == Any {
		return Any, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", err
		}
		if p.Addr().Zone() != "" {
			return "", fmt.Errorf("zones are not allowed")
		}
		p = p.Masked()
		if p.Bits() == p.Addr().BitLen() {
			return p.Addr().String(), nil
		}
		return p.String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", err
	}
	if a.Zone() != "" {
		return "", fmt.Errorf("zones are not allowed")
	}
	return a.String(), nil
}

// sameSource compares two sources as addresses, so "10.0.0.5/32" equals "10.0.0.5".
func sameSource(a, b string) bool {
	if a == Any || b == Any {
		return a == b
	}
	ca, err1 := canonicalSource(a)
	cb, err2 := canonicalSource(b)
	return err1 == nil && err2 == nil && ca == cb
}

func sortedUnique(ports []int) []int {
	out := slices.Clone(ports)
	slices.Sort(out)
	return slices.Compact(out)
}
