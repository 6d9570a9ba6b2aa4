package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/doctor"
)

// TestAlertsReachRootsMailbox runs the scheduled jobs' commands, as /etc/cron.d/emrkit-backup
// has them, on a fixture OSCAR host whose MTA is Debian's dma (a real sendmail, delivering to
// /var/mail/root): a doctor check that passed and fails is mailed once, not again while it
// stays failed; a backup with MariaDB down is mailed; a restore test of a damaged backup is
// mailed; and no mail holds the patient's name the damaged statement carries, or any of the
// jobs' stdout on a run that went right.
func TestAlertsReachRootsMailbox(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	c.oscarHost(chrootProps)
	c.putDeb(deb)
	c.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	job := func(name string) string { // the command the cron entry runs
		entry := c.mustRun("cat", "/etc/cron.d/emrkit-backup")
		for _, l := range strings.Split(entry, "\n") {
			if _, cmd, ok := strings.Cut(l, "exit 0; "); ok && strings.Contains(cmd, name) {
				return cmd
			}
		}
		t.Fatalf("no %q job in the cron entry:\n%s", name, entry)
		return ""
	}
	mails := func(want int) string {
		t.Helper()
		var box []byte
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			box, _ = os.ReadFile(c.path("/var/mail/root"))
			if n := strings.Count(string(box), "\nSubject: emrkit on "); n >= want || time.Now().After(deadline) {
				if n != want {
					t.Fatalf("root's mailbox holds %d alerts, want %d:\n%s", n, want, box)
				}
				return string(box)
			}
		}
	}

	// The first run mails nothing (no report to compare with) and keeps its report; a check
	// that passed and breaks is mailed once.
	if r, _ := doctorRun(t, c, "/usr/bin/emrkit"); statuses(r)["oscar.totp"] != doctor.Pass {
		t.Fatalf("oscar.totp does not pass on the fresh host:\n%s", table(r))
	}
	c.run("sh", "-c", job("doctor"))
	mails(0)
	props := c.path("/usr/share/tomcat9/oscar.properties")
	text, err := os.ReadFile(props)
	must(t, err)
	must(t, os.WriteFile(props, []byte(strings.Replace(string(text), "TOTP=1", "TOTP=0", 1)), 0o640))
	for range 2 {
		if out, code := c.run("sh", "-c", job("doctor")); code != 3 {
			t.Fatalf("doctor with TOTP=0: exit %d\n%s", code, out)
		}
	}
	box := mails(1)
	for _, want := range []string{"To: root\n", "passed last time and fail now", "FAIL oscar.totp", "Auto-Submitted: auto-generated"} {
		if !strings.Contains(box, want) {
			t.Errorf("the doctor alert lacks %q:\n%s", want, box)
		}
	}

	// A restore test of a backup whose row a patient's name is in, damaged so the server
	// quotes it.
	const marker = "Zqxwvutsrq"
	c.mustRun("mariadb", "oscar_15", "-e", "UPDATE demographic SET last_name = '"+marker+"' WHERE demographic_no = 42")
	c.mustRun("emrkit", "backup")
	files, _ := filepath.Glob(c.path("/var/backups/emrkit/oscar_15-backup-*.sql.gz"))
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	inside := strings.TrimPrefix(files[0], c.root)
	// A value typed twice over the comma before it: the server quotes it in its error.
	c.mustRun("sh", "-c", `set -e; gzip -dc "$1" | sed "0,/,'`+marker+`'/s//,,'`+marker+`'/" | gzip > /tmp/damaged.gz; mv /tmp/damaged.gz "$1"`, "sh", inside)
	// The job's stdout goes nowhere; once mailed, nothing is on stderr for cron to mail again.
	if out, code := c.run("sh", "-c", job("backup verify")); code != 3 || out != "" {
		t.Fatalf("restore test of a damaged backup: exit %d\n%s", code, out)
	}
	box = mails(2)
	if !strings.Contains(box, "the scheduled restore test failed") || !strings.Contains(box, "[value withheld]") {
		t.Errorf("the restore test alert:\n%s", box)
	}

	// A backup with MariaDB down.
	c.mustRun("sh", "-c", "mariadb-admin shutdown")
	if out, code := c.run("sh", "-c", job("backup --")); code != 1 || out != "" {
		t.Fatalf("backup with MariaDB down: exit %d\n%s", code, out)
	}
	box = mails(3)
	if !strings.Contains(box, "the scheduled backup failed") || !strings.Contains(box, "fix: ") {
		t.Errorf("the backup alert:\n%s", box)
	}
	if strings.Contains(box, marker) {
		t.Fatalf("a patient's name reached root's mailbox:\n%s", box)
	}
	t.Logf("root's mailbox:\n%s", box)
}
