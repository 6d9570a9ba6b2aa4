package maint

import (
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
)

func TestMergeAnswersIntoConfig(t *testing.T) {
	answers := map[string]string{
		"emrkit/profile": "oscar", "emrkit/database": "oscar_15", "emrkit/totp-users": "oscardoc, nurse",
		"emrkit/pgp-mode": "symmetric", "emrkit/pgp-uid": "OSCAR Export <root@localhost>", "emrkit/pgp-public-key": "",
		"emrkit/firewall": "false", "emrkit/https-port": "443", "emrkit/ssh-port": "",
		"emrkit/migrations": "middle-names, roster-enrolled-to",
	}
	cfg, resync, written, err := Merge(config.Default(), answers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.TOTP.Users, "|") != "oscardoc|nurse" || cfg.PGP.Mode != "symmetric" || cfg.Firewall.Enable ||
		cfg.Firewall.HTTPSPort.N != 443 || cfg.Firewall.SSHPort.N != 0 || len(cfg.Migrations) != 2 {
		t.Fatalf("merged: %+v", cfg)
	}
	if len(resync) != 0 || written["emrkit/totp-users"] != "oscardoc nurse" {
		t.Fatalf("resync %v written %v", resync, written)
	}
	// The admin then edits the file by hand; the next configure keeps the edit and tells debconf.
	cfg.Firewall.HTTPSPort = config.P(9443)
	cfg2, resync, _, err := Merge(cfg, answers, written)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.Firewall.HTTPSPort.N != 9443 || resync["emrkit/https-port"] != "9443" || len(resync) != 1 {
		t.Fatalf("hand edit lost: port %d, resync %v", cfg2.Firewall.HTTPSPort.N, resync)
	}
}

func TestMergeRejectsBadAnswersNamingTheQuestion(t *testing.T) {
	for answers, want := range map[[2]string]string{
		{"emrkit/https-port", "abc"}:      `emrkit/https-port: "abc" is not a port (1-65535)`,
		{"emrkit/ssh-port", "70000"}:      `emrkit/ssh-port: "70000" is not a port`,
		{"emrkit/totp-users", "o'brien"}:  `emrkit/totp-users (totp.users[0]: "o'brien"`,
		{"emrkit/migrations", "drop-all"}: `emrkit/migrations (migrations[0]: "drop-all" is not one of`,
		{"emrkit/database", "oscar;drop"}: `emrkit/database (database.name: "oscar;drop"`,
		{"emrkit/pgp-mode", "public-key"}: `pgp.public_key: required`,
	} {
		_, _, _, err := Merge(config.Default(), map[string]string{answers[0]: answers[1]}, nil)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "dpkg-reconfigure emrkit") {
			t.Errorf("%v: got %v, want %q", answers, err, want)
		}
	}
}
