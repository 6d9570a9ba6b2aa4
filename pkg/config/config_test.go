package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultsValidateAndRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etc", "emrkit.yaml")
	if err := Write(p, Default()); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stripRaw(got), stripRaw(Default())) {
		t.Fatalf("round trip:\n%+v\n%+v", got, Default())
	}
}

// stripRaw drops the decoded source text of ports, which only error messages use.
func stripRaw(c Config) Config {
	c.Database.Port.raw, c.Firewall.HTTPSPort.raw, c.Firewall.SSHPort.raw = "", "", ""
	for i := range c.Firewall.Deny {
		c.Firewall.Deny[i].raw = ""
	}
	return c
}

func TestMissingDefaultFileGivesDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.yaml"), false)
	if err != nil || c.Profile != "oscar" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), true); err == nil {
		t.Fatal("an explicitly named missing config must be an error")
	}
}

func TestValidationNamesKeyAndFix(t *testing.T) {
	cases := map[string]string{
		"firewall: {https_port: abc}":                             `firewall.https_port: "abc" is not a port (1-65535)`,
		"firewall: {https_port: 70000}":                           `firewall.https_port: "70000" is not a port (1-65535)`,
		"firewall: {deny: [3306, -1]}":                            `firewall.deny[1]: "-1" is not a port`,
		"firewall: {allow_from: [10.0.0.0/33]}":                   `firewall.allow_from[0]: "10.0.0.0/33" is not an address or CIDR`,
		"totp: {users: [\"o'brien\"]}":                            `totp.users[0]: "o'brien" is not an OSCAR user name`,
		"database: {name: \"oscar;drop\"}":                        `database.name: "oscar;drop" is not a database name`,
		"profile: plone":                                          `profile: "plone" is not one of oscar, openemr`,
		"pgp: {mode: public-key}":                                 `pgp.public_key: required when pgp.mode is public-key`,
		"paths: {state_dir: relative}":                            `paths.state_dir: "relative" must be an absolute path`,
		"firewal: {}":                                             `c.yaml:1: unknown key firewal;`,
		"backup: {keep: -1}":                                      `backup.keep: -1 is not a number of backups (0 keeps all)`,
		"backup: {offsite: {keep: {daily: 3}}}":                   `backup.offsite: repository is empty`,
		"backup: {offsite: {repository: s3:x}}":                   `backup.offsite.repository "s3:x": only SFTP and local repositories are supported`,
		"backup: {offsite: {repository: /v, keep: {weekly: -2}}}": `backup.offsite.keep.weekly: -2 is out of range`,
		"backup: {offsite: {repository: /v, read_data: lots}}":    `backup.offsite.read_data: "lots" is not a share`,
		"backup: {offsite: {repository: /v, password_file: rel}}": `backup.offsite.password_file "rel": an absolute path is needed`,
		"backup: {offsite: {repository: /v, ssh_key: \"/a b\"}}":  `backup.offsite.ssh_key "/a b": give an absolute path without blanks or quotes`,
	}
	for in, want := range cases {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(in), 0o600)
		_, err := Load(p, true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", in, err)
		}
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	c := Default()
	c.Firewall.HTTPSPort = P(0)
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := Write(p, c); err == nil {
		t.Fatal("invalid config written")
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("file created for invalid config")
	}
}

// TestBackupKeepOnlyWrittenWhenSet: the package rewrites the file on every configure, and an
// older release's strict loader must not meet backup.keep after a downgrade unless an admin
// set it.
func TestBackupKeepOnlyWrittenWhenSet(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := Write(p, Default()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if strings.Contains(string(data), "\nbackup:") {
		t.Fatalf("default config writes backup:\n%s", data)
	}
	if got := Default().Backup.KeepBackups(); got != DefaultKeep {
		t.Fatalf("unset keep = %d, want %d", got, DefaultKeep)
	}
	for in, want := range map[string]int{"backup: {keep: 0}": 0, "backup: {keep: 3}": 3, "backup: {}": DefaultKeep} {
		os.WriteFile(p, []byte(in), 0o600)
		c, err := Load(p, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Backup.KeepBackups(); got != want {
			t.Errorf("%s: keep %d, want %d", in, got, want)
		}
		if err := Write(p, c); err != nil {
			t.Fatal(err)
		}
		again, err := Load(p, true)
		if err != nil || again.Backup.KeepBackups() != want {
			t.Errorf("%s: round trip keep %d (%v), want %d", in, again.Backup.KeepBackups(), err, want)
		}
	}
}

// alerts.mail_to reaches sendmail as one argument: nothing that could be a second recipient,
// an option or a header gets through.
func TestAlertsRecipient(t *testing.T) {
	for to, ok := range map[string]bool{"": true, "root": true, "admin@clinic.example": true, "off": true,
		"root\nBcc: eve@x": false, "-oQ/tmp": false, "a b": false, "root,eve": false, "<root>": false, "a@b..c": false} {
		c := Default()
		c.Alerts.MailTo = to
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("alerts.mail_to %q: %v", to, err)
		}
	}
	if (Alerts{}).Recipient() != "root" || (Alerts{MailTo: "off"}).Recipient() != "" || (Alerts{}).Program() != "/usr/sbin/sendmail" {
		t.Fatal("defaults")
	}
	c := Default()
	c.Alerts.Sendmail = "sendmail"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "alerts.sendmail") {
		t.Fatalf("a relative sendmail: %v", err)
	}
}
