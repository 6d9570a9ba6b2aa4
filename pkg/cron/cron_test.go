package cron

import (
	"os/exec"
	"strings"
	"testing"
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
