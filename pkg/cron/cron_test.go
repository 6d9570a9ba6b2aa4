package cron

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
)

func TestCheckPath(t *testing.T) {
	for _, ok := range []string{"/etc/cron.d/emrkit", "/etc/cron.d/emr_kit-2"} {
		if err := CheckPath(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"/etc/cron.d/emrkit.cron", "etc/cron.d/emrkit", "/etc/cron.d/emr kit"} {
		if err := CheckPath(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestNameMatchesRunParts asks the real run-parts which names it would take.
func TestNameMatchesRunParts(t *testing.T) {
	dir := t.TempDir()
	names := []string{"emrkit", "emrkit.dpkg-old", "emr_kit-2", "emrkit~"}
	for _, n := range names {
		if err := exec.Command("touch", dir+"/"+n).Run(); err != nil {
			t.Fatal(err)
		}
		exec.Command("chmod", "+x", dir+"/"+n).Run()
	}
	out, err := exec.Command("run-parts", "--test", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		taken := strings.Contains(string(out), dir+"/"+n+"\n")
		if taken != (CheckPath("/etc/cron.d/"+n) == nil) {
			t.Errorf("%s: run-parts takes it: %v, CheckPath disagrees", n, taken)
		}
	}
}

func TestPINJob(t *testing.T) {
	job := string(PINJob("/etc/emrkit/emrkit.yaml"))
	if !strings.Contains(job, "* * * * * root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit 2fa sync-pins --for 60s\n") {
		t.Fatalf("job:\n%s", job)
	}
	if !strings.Contains(string(PINJob("/srv/e.yaml")), "emrkit --config /srv/e.yaml 2fa") {
		t.Fatal("custom config path not passed")
	}
}

func TestBackupStep(t *testing.T) {
	dir := t.TempDir()
	for sched, want := range map[string]string{"": "17 2 * * * root", "daily": "17 2 * * * root", "weekly": "17 2 * * 0 root", "30  1 * * 1-5": "30 1 * * 1-5 root"} {
		s, err := BackupStep(dir, "/etc/emrkit/emrkit.yaml", config.Backup{Schedule: sched}, Jobs{Encrypt: true, Alerts: true}, "0.5.0")
		if err != nil || len(s) != 1 {
			t.Fatalf("%q: %v %v", sched, s, err)
		}
		c := string(s[0].Content)
		if !strings.Contains(c, "\n"+want+" [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit backup --encrypt --alert >/dev/null\n") ||
			!strings.Contains(c, "\n47 3 * * 0 root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit backup verify --alert >/dev/null\n") ||
			!strings.Contains(c, "\n37 6 * * * root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit doctor --alert >/dev/null\n") {
			t.Errorf("%q:\n%s", sched, c)
		}
		if strings.Contains(c, "offsite") {
			t.Errorf("%q: an offsite check without backup.offsite:\n%s", sched, c)
		}
		off, _ := BackupStep(dir, "/etc/emrkit/emrkit.yaml", config.Backup{Schedule: sched, Offsite: config.Offsite{Repository: "/mnt/vault"}}, Jobs{Encrypt: true, Alerts: true}, "0.5.0")
		if c := string(off[0].Content); !strings.HasSuffix(c, "\n27 4 * * 6 root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit backup offsite check --alert >/dev/null\n") {
			t.Errorf("%q with backup.offsite:\n%s", sched, c)
		}
		old, _ := BackupStep(dir, "/etc/emrkit/emrkit.yaml", config.Backup{Schedule: sched}, Jobs{Encrypt: true}, "0.5.0")
		if c := string(old[0].Content); !strings.Contains(c, "/usr/bin/emrkit backup --encrypt\n") || strings.Contains(c, "alert") {
			t.Errorf("%q before alerts:\n%s", sched, c)
		}
	}
	if s, err := BackupStep(dir, "/etc/emrkit/emrkit.yaml", config.Backup{Schedule: "off"}, Jobs{}, "0.5.0"); err != nil || len(s) != 0 {
		t.Fatalf("off: %v %v", s, err)
	}
	for _, bad := range []string{"hourly", "* * *", "1 2 3 4 5; rm -rf /", "a b c d e"} {
		c := config.Default()
		c.Backup.Schedule = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "backup.schedule") {
			t.Errorf("schedule %q: %v", bad, err)
		}
	}
}

func TestConfigPathOnTheCronLine(t *testing.T) {
	for path, want := range map[string]string{
		"emrkit.yaml":           "is a relative path, which the cron job cannot find; give --config an absolute path",
		"/etc/emrkit/my config": "cannot go on a cron line",
		"/etc/emrkit/a;b":       "cannot go on a cron line",
	} {
		if err := checkConfigPath(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", path, err, want)
		}
	}
	if err := checkConfigPath("/etc/emrkit/emrkit.yaml"); err != nil {
		t.Error(err)
	}
}
