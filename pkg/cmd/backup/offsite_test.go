package backup_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/offsite"
)

// offsiteEnv is newEnv with backup.offsite set to a local restic repository in the test's
// directory (pkg/offsite's lab tests the same commands over SFTP), keeping one daily copy.
func offsiteEnv(t *testing.T) (*env, string) {
	t.Helper()
	if _, err := exec.LookPath("restic"); err != nil {
		t.Fatal("offsite copies need restic: apt install restic (scripts/deps.sh lists it)")
	}
	e := newEnv(t, mariadbtest.Start(t), "")
	vault := filepath.Join(e.dir, "vault")
	cfg := mustRead(t, e.config) + "backup: {offsite: {repository: " + vault + ", password_file: " + e.dir + "/offsite.password, keep: {daily: 1, weekly: 0, monthly: 0}}}\n"
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e, vault
}

// TestOffsiteCopyRestoreAndCheck takes encrypted backups that copy themselves into the
// repository, restores the newest from there after the patients are gone, and checks the
// repository before and after one of its data files is damaged.
func TestOffsiteCopyRestoreAndCheck(t *testing.T) {
	e, vault := offsiteEnv(t)
	want := e.checksums("oscar_15")

	if _, errs, code := e.run("backup", "offsite", "list"); code != 1 || !strings.Contains(errs, "run emrkit backup offsite init") {
		t.Fatalf("list before init: %d %q", code, errs)
	}
	if _, errs, code := e.run("backup"); code != 1 || !strings.Contains(errs, "offsite copy failed") || !strings.Contains(errs, "stays on this server only") {
		t.Fatalf("backup before init: %d %q", code, errs)
	}
	out, errs, code := e.run("backup", "offsite", "init")
	if code != 0 || !strings.Contains(out, "created the restic repository "+vault) {
		t.Fatalf("init: %d %q %q", code, out, errs)
	}
	pwFile := filepath.Join(e.dir, "offsite.password")
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	password := strings.TrimSpace(mustRead(t, pwFile))
	if out, _, code := e.run("backup", "offsite", "init"); code != 0 || !strings.Contains(out, "is there already") {
		t.Fatalf("second init: %d %q", code, out)
	}
	if strings.TrimSpace(mustRead(t, pwFile)) != password {
		t.Fatal("a second init changed the repository password")
	}

	var outputs []string
	for range 2 {
		out, errs, code := e.run("backup", "--encrypt")
		outputs = append(outputs, out, errs)
		if code != 0 || !strings.Contains(errs, "offsite: snapshot ") {
			t.Fatalf("backup --encrypt: %d %q %q", code, out, errs)
		}
	}
	newest := strings.TrimSpace(outputs[2])
	out, _, code = e.run("backup", "offsite", "list", "--json")
	var snaps []offsite.Snapshot
	if code != 0 || json.Unmarshal([]byte(out), &snaps) != nil || len(snaps) != 1 {
		t.Fatalf("list after two backups with keep.daily 1: %d %q", code, out)
	}
	if file, _ := snaps[0].File(); file != newest {
		t.Fatalf("the copy kept is of %s, want the newest backup %s", file, newest)
	}
	out, _, _ = e.run("backup", "offsite", "list")
	if !strings.HasPrefix(out, "SNAPSHOT  ") || !strings.Contains(out, snaps[0].ShortID) || !strings.Contains(out, filepath.Base(newest)) {
		t.Fatalf("list table:\n%s", out)
	}

	// The server loses the patients and every local backup; the offsite copy brings them back.
	if _, err := e.srv.DB(t, "oscar_15").Exec("DELETE FROM demographic"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(e.backups); err != nil {
		t.Fatal(err)
	}
	out, errs, code = e.run("restore", "--from", "offsite", "--yes", "--key", e.private, "--passphrase-file", e.passph)
	outputs = append(outputs, out, errs)
	if code != 0 || !strings.Contains(errs, "fetching snapshot "+snaps[0].ShortID) || !regexp.MustCompile(`\nrestore oscar_15: ([0-9.]+)/([0-9.]+) MB \(100%\) in `).MatchString(errs) {
		t.Fatalf("restore --from offsite: %d %q %q", code, out, errs)
	}
	if got := e.checksums("oscar_15"); got != want {
		t.Fatalf("restored from offsite: %s, want %s", got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(e.backups, ".offsite-*")); len(left) != 0 {
		t.Fatalf("the fetched copy was left behind: %v", left)
	}
	if _, errs, code := e.run("restore", "--from", "offsite", "0000beef", "--yes"); code != 1 || !strings.Contains(errs, "0000beef is not one of emrkit's snapshots") {
		t.Fatalf("restore of an unknown snapshot: %d %q", code, errs)
	}

	out, errs, code = e.run("backup", "offsite", "check")
	outputs = append(outputs, out, errs)
	if code != 0 || !strings.HasPrefix(out, "PASS the offsite repository "+vault) {
		t.Fatalf("check: %d %q %q", code, out, errs)
	}
	if rec, ok, err := offsite.LastCheck(filepath.Join(e.dir, "state")); err != nil || !ok || !rec.OK || rec.Subset != "10%" {
		t.Fatalf("check record: %+v %v %v", rec, ok, err)
	}
	doctorSays(t, e, map[string]string{"offsite.recent": "PASS", "offsite.check": "PASS"})
	// One byte of every data file flipped: the check reads all of them back with read_data 100%.
	packs, _ := filepath.Glob(filepath.Join(vault, "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("the repository has no data files")
	}
	for _, p := range packs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		os.Chmod(p, 0o600)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(e.config, []byte(strings.Replace(mustRead(t, e.config), "monthly: 0}", "monthly: 0}, read_data: 100%", 1)), 0o600)
	out, errs, code = e.run("backup", "offsite", "check")
	outputs = append(outputs, out, errs)
	if code != 3 || !strings.Contains(errs, "backup offsite check of "+vault+" FAILED") {
		t.Fatalf("check of a damaged repository: %d %q %q", code, out, errs)
	}
	if rec, ok, _ := offsite.LastCheck(filepath.Join(e.dir, "state")); !ok || rec.OK || rec.Problem == "" {
		t.Fatalf("check record of the damaged repository: %+v", rec)
	}
	doctorSays(t, e, map[string]string{"offsite.check": "FAIL"})
	for _, o := range outputs {
		if strings.Contains(o, password) {
			t.Fatalf("the repository password is in emrkit's output:\n%s", o)
		}
	}
}

// doctorSays fails unless `emrkit doctor --json` reports each check with the status wanted.
func doctorSays(t *testing.T, e *env, want map[string]string) {
	t.Helper()
	out, errs, _ := e.run("doctor", "--json")
	var r struct {
		Checks []struct{ ID, Status, Finding, Safeguard string }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json: %v %q", err, errs)
	}
	for _, c := range r.Checks {
		if w, ok := want[c.ID]; ok {
			if c.Status != w {
				t.Errorf("doctor: %s is %s (%s), want %s", c.ID, c.Status, c.Finding, w)
			}
			delete(want, c.ID)
		}
	}
	if len(want) != 0 {
		t.Errorf("doctor reported none of %v", want)
	}
}

// TestOffsiteFailuresAreMailed: with --alert (cron's runs) a backup whose offsite copy fails
// and a failed repository check each mail alerts.mail_to what failed, through alerts.sendmail
// (here a program keeping the message; e2e's TestAlertsReachRootsMailbox runs a real MTA), and
// print the failure to stdout only, so cron mails no second copy.
func TestOffsiteFailuresAreMailed(t *testing.T) {
	e, _ := offsiteEnv(t)
	box := filepath.Join(e.dir, "mailbox")
	sendmail := filepath.Join(e.dir, "sendmail")
	if err := os.WriteFile(sendmail, []byte("#!/bin/sh\ncat >>"+box+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := mustRead(t, e.config) + "alerts: {mail_to: root, sendmail: " + sendmail + "}\n"
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// No repository yet (no init): the copy fails, the local backup is written.
	out, errs, code := e.run("backup", "--encrypt", "--alert")
	mail := mustRead(t, box)
	if code != 1 || !strings.Contains(mail, "the offsite copy of the scheduled backup failed") ||
		!strings.Contains(out, "offsite copy failed") || strings.Contains(errs, "offsite copy failed") {
		t.Fatalf("backup --alert with the copy failing: %d\nstdout %q\nstderr %q\nmail:\n%s", code, out, errs, mail)
	}
	if !strings.Contains(out, e.backups+"/oscar_15-backup-") {
		t.Fatalf("the local backup's path is not printed: %q", out)
	}
	if err := os.Remove(box); err != nil {
		t.Fatal(err)
	}
	out, errs, code = e.run("backup", "offsite", "check", "--alert")
	mail = mustRead(t, box)
	if code != 3 || !strings.Contains(mail, "the offsite repository check failed") || strings.Contains(errs, "FAILED") {
		t.Fatalf("offsite check --alert of no repository: %d\nstdout %q\nstderr %q\nmail:\n%s", code, out, errs, mail)
	}
}
