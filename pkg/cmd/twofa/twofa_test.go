package twofa_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/cmd/root"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/plan"
)

type env struct {
	t      *testing.T
	srv    *mariadbtest.Server
	db     *sql.DB
	config string
	props  string
	name   string
}

func newEnv(t *testing.T, srv *mariadbtest.Server, name string) *env {
	t.Helper()
	cfg := srv.CreateDatabase(t, name)
	db := srv.DB(t, name)
	oscarfixture.Create(t, db, true) // OSCAR 19.5+: the 2FA columns are there
	dir := t.TempDir()
	e := &env{t: t, srv: srv, db: db, name: name, config: filepath.Join(dir, "emrkit.yaml"), props: filepath.Join(dir, "oscar.properties")}
	os.WriteFile(e.props, []byte("TOTP=1\n"), 0o644)
	yaml := fmt.Sprintf("database: {socket: %s, name: %s}\noscar: {properties: %s}\nfirewall: {enable: false}\npaths: {state_dir: %s/state, backup_dir: %s/b, cron_file: %s/cron}\n",
		cfg.Socket, name, e.props, dir, dir, dir)
	os.WriteFile(e.config, []byte(yaml), 0o600)
	return e
}

// run executes `emrkit ARGS...` through the real command tree, without a terminal.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{Version: "0.1.0-1", In: strings.NewReader(""), Out: &out, Err: &errb, Host: plan.Host{ConfigPath: e.config}}
	cmd := root.New(f)
	cmd.SetArgs(append([]string{"--config", e.config}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	if err != nil && err.Error() != "" {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), cmdutil.ExitCode(err)
}

func (e *env) secret(user string) string {
	var s sql.NullString
	e.db.QueryRow("SELECT totp_secret FROM security WHERE user_name=?", user).Scan(&s)
	return s.String
}

func oathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	out, err := exec.Command("oathtool", "--totp", "-b", "-N", fmt.Sprintf("@%d", at.Unix()), secret).Output()
	if err != nil {
		t.Fatalf("oathtool (run scripts/deps.sh): %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestEnrollVerifyListDisableRevert(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_cli")
	before := srv.Dump(t, e.name, "security")

	out, errs, code := e.run("2fa", "enroll", "oscardoc")
	if code != 0 || !strings.Contains(out, "otpauth://totp/OSCAR:oscardoc?secret=") || !strings.ContainsAny(out, "▀▄█") {
		t.Fatalf("enroll: %d %q %q", code, out, errs)
	}
	secret := e.secret("oscardoc")
	if !strings.Contains(out, "secret="+secret) {
		t.Fatal("printed URI does not carry the stored secret")
	}
	if _, errs, code = e.run("2fa", "enroll", "oscardoc"); code != 1 || !strings.Contains(errs, "already has a TOTP secret") {
		t.Fatalf("re-enrol without --force: %d %q", code, errs)
	}
	if _, errs, code = e.run("2fa", "enroll", "oscardoc", "--force"); code != 1 || !strings.Contains(errs, "add --yes") {
		t.Fatalf("--force without a terminal or --yes must refuse: %d %q", code, errs)
	}
	if e.secret("oscardoc") != secret {
		t.Fatal("refused re-enrolment changed the secret")
	}

	// Codes from the real oathtool verify once, and only once.
	code6 := oathtool(t, secret, time.Now())
	if out, _, c := e.run("2fa", "verify", "oscardoc", code6); c != 0 {
		t.Fatalf("verify oathtool's code: %d %s", c, out)
	}
	if _, _, c := e.run("2fa", "verify", "oscardoc", code6); c != 3 {
		t.Fatalf("replayed code accepted: %d", c)
	}
	for _, bad := range []string{"000000x", "12345", "abcdef", "１２３４５６", " 123456"} {
		if _, errs, c := e.run("2fa", "verify", "oscardoc", bad); c != 2 || !strings.Contains(errs, "CODE must be the 6 digits") || strings.Contains(errs, bad) {
			t.Fatalf("malformed code %q: exit %d, %q; want 2 and a usage line without it", bad, c, errs)
		}
	}

	out, _, code = e.run("2fa", "list", "--json")
	if code != 0 || !strings.Contains(out, `"user": "oscardoc"`) || !strings.Contains(out, `"enrolled_by_emrkit": true`) || strings.Contains(out, secret) {
		t.Fatalf("list --json: %d %s", code, out)
	}

	if out, _, code = e.run("2fa", "enroll", "oscardoc", "--force", "--yes", "--no-qr"); code != 0 || strings.ContainsAny(out, "▀▄█") {
		t.Fatalf("enroll --force --yes --no-qr: %d %s", code, out)
	}
	if e.secret("oscardoc") == secret {
		t.Fatal("--force did not issue a new secret")
	}
	if _, _, code = e.run("2fa", "disable", "oscardoc"); code != 0 {
		t.Fatal("disable")
	}
	out, _, _ = e.run("2fa", "list")
	if !strings.Contains(out, "oscardoc  no") {
		t.Fatalf("list after disable:\n%s", out)
	}
	// The enrolment came from a command, so apply's plan does not own it; revert --all does,
	// and puts back the state from before the first enrolment (disable changed the flag, so
	// compare-and-swap keeps the user's row as it is now).
	if _, _, code = e.run("2fa", "enroll", "oscardoc", "--force", "--yes", "--no-qr"); code != 0 {
		t.Fatal("re-enrol")
	}
	if out, errs, code := e.run("revert", "--all"); code != 0 {
		t.Fatalf("revert: %s %s", out, errs)
	}
	if after := srv.Dump(t, e.name, "security"); after != before {
		t.Fatalf("security after revert differs from before:\n%s\n---\n%s", before, after)
	}
}

func TestSyncPinsWritesCurrentCodeOnlyWhenTOTPOn(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_sync")
	if _, errs, code := e.run("2fa", "enroll", "oscardoc", "--no-qr"); code != 0 {
		t.Fatal(errs)
	}
	os.WriteFile(e.props, []byte("TOTP=0\n"), 0o644)
	if _, errs, code := e.run("2fa", "sync-pins"); code != 0 {
		t.Fatal(errs)
	}
	var pin string
	e.db.QueryRow("SELECT pin FROM security WHERE user_name='oscardoc'").Scan(&pin)
	if pin != "1117" {
		t.Fatalf("TOTP=0 but the PIN changed to %q", pin)
	}
	os.WriteFile(e.props, []byte("TOTP=1\n"), 0o644)
	if _, errs, code := e.run("2fa", "sync-pins"); code != 0 {
		t.Fatal(errs)
	}
	e.db.QueryRow("SELECT pin FROM security WHERE user_name='oscardoc'").Scan(&pin)
	now := time.Now()
	if pin != oathtool(t, e.secret("oscardoc"), now) && pin != oathtool(t, e.secret("oscardoc"), now.Add(-time.Second)) {
		t.Fatalf("PIN %q is not oathtool's current code", pin)
	}
}

func TestBadInput(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_badcli")
	before := srv.Dump(t, e.name, "security")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"2fa", "enroll", "ghost", "--no-qr"}, `no such OSCAR user "ghost"`},
		{[]string{"2fa", "enroll", "o'brien"}, `user name "o'brien"`},
		{[]string{"2fa", "enroll", "x;drop"}, `user name "x;drop"`},
		{[]string{"2fa", "verify", "ghost", "123456"}, `no such OSCAR user "ghost"`},
		{[]string{"2fa", "disable", "ghost"}, `no such OSCAR user "ghost"`},
	} {
		_, errs, code := e.run(c.args...)
		if code != 1 || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: code %d, stderr %q, want one line with %q", c.args, code, errs, c.want)
		}
	}
	if srv.Dump(t, e.name, "security") != before {
		t.Fatal("bad input changed the database")
	}
	for _, bad := range []string{"-1s", "2h", "soon"} {
		if _, errs, code := e.run("2fa", "sync-pins", "--for", bad); code != 2 || !strings.Contains(errs, "how long to keep updating must be a duration from 0s to 1h0m0s") {
			t.Errorf("sync-pins --for %s: code %d, stderr %q", bad, code, errs)
		}
	}
	// A database without OSCAR's 2FA columns.
	old := srv.CreateDatabase(t, "oscar_pre")
	oscarfixture.Create(t, srv.DB(t, "oscar_pre"), false)
	os.WriteFile(e.config, []byte(strings.Replace(readFile(t, e.config), "name: "+e.name, "name: "+old.Name, 1)), 0o600)
	if _, errs, code := e.run("2fa", "enroll", "oscardoc"); code != 1 || !strings.Contains(errs, "run `emrkit apply` first") {
		t.Fatalf("pre-2FA database: %d %q", code, errs)
	}
	srv.Stop()
	start := time.Now()
	_, errs, code := e.run("2fa", "sync-pins", "--for", "60s")
	if code != 1 || !strings.Contains(errs, "cannot reach the database server") || time.Since(start) > 5*time.Second {
		t.Fatalf("sync-pins with MariaDB down: %d %q after %v", code, errs, time.Since(start))
	}
	if _, errs, code := e.run("2fa", "enroll", "oscardoc"); code != 1 || !strings.Contains(errs, "start MariaDB") {
		t.Fatalf("enroll with MariaDB down: %d %q", code, errs)
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdoptAfterADisasterRestore: a new server that has the old one's database (restored) but
// a journal of its own does not cycle the PIN of a user the old emrkit enrolled; `2fa adopt`
// with the old journal takes the enrolment over, so sync-pins cycles it and revert --all puts
// back the user's row as it was before the old server's emrkit, PIN included.
func TestAdoptAfterADisasterRestore(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_adopt")
	before := srv.Dump(t, e.name, "security")
	if _, errs, code := e.run("2fa", "enroll", "oscardoc", "--no-qr"); code != 0 {
		t.Fatal(errs)
	}
	state := filepath.Join(filepath.Dir(e.config), "state")
	old := filepath.Join(t.TempDir(), "journal.json")
	data, err := os.ReadFile(filepath.Join(state, "journal.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(old, data, 0o600)
	os.RemoveAll(state) // the new server: the database came back, the journal did not
	pin := func() string {
		var p string
		e.db.QueryRow("SELECT pin FROM security WHERE user_name='oscardoc'").Scan(&p)
		return p
	}
	e.db.Exec("UPDATE security SET pin = '000000' WHERE user_name = 'oscardoc'") // the code the backup caught
	if _, errs, code := e.run("2fa", "sync-pins"); code != 0 || pin() != "000000" {
		t.Fatalf("sync-pins before adopt: exit %d, PIN %q, %s", code, pin(), errs)
	}
	if _, errs, code := e.run("2fa", "adopt", "--journal", filepath.Join(t.TempDir(), "none.json")); code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("adopt of a journal that is not there: exit %d, %q", code, errs)
	}
	none := filepath.Join(t.TempDir(), "journal.json")
	os.WriteFile(none, []byte(`{"format": 1, "entries": []}`), 0o600)
	if out, errs, code := e.run("2fa", "adopt", "--journal", none); code != 0 || out != "" || !strings.Contains(errs, "records no 2FA enrolment emrkit made in database oscar_adopt: there is none to adopt") {
		t.Fatalf("adopt from a journal of no enrolment: exit %d, %q %q", code, out, errs)
	}
	out, errs, code := e.run("2fa", "adopt", "--journal", old)
	if code != 0 || !regexp.MustCompile(`oscardoc\s+yes`).MatchString(out) || !strings.Contains(errs, "adopted 1 of 1") {
		t.Fatalf("adopt: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := e.run("2fa", "sync-pins"); code != 0 {
		t.Fatal(errs)
	}
	now := time.Now()
	if p := pin(); p != oathtool(t, e.secret("oscardoc"), now) && p != oathtool(t, e.secret("oscardoc"), now.Add(-time.Second)) {
		t.Fatalf("after adopt the PIN %q is not the current code", p)
	}
	if out, errs, code := e.run("2fa", "adopt", "--journal", old); code != 0 || !strings.Contains(out, "this host's journal records them already") || !strings.Contains(errs, "adopted 0 of 1") {
		t.Fatalf("second adopt: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := e.run("revert", "--all"); code != 0 {
		t.Fatalf("revert: %s %s", out, errs)
	}
	if after := srv.Dump(t, e.name, "security"); after != before {
		t.Fatalf("security after revert differs from before the old server's enrolment:\n%s\n---\n%s", before, after)
	}
	// A secret changed since (re-enrolled by hand on the new server): not emrkit's to adopt.
	os.RemoveAll(state)
	e.db.Exec("UPDATE security SET totp_enabled = 1, totp_secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' WHERE user_name = 'oscardoc'")
	if out, _, code := e.run("2fa", "adopt", "--journal", old); code != 0 || !strings.Contains(out, "their secret is not the one emrkit wrote there") {
		t.Fatalf("adopt of a changed secret: exit %d\n%s", code, out)
	}
}
