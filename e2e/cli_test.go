// Package e2e runs emrkit as a process: the CLI contract (exit codes, one-line errors,
// idempotence, kill -9 convergence) here, and the package's life under real dpkg in a Debian
// chroot in lifecycle_test.go.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/emrkit/emrkit"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/internal/testbin"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/release"
)

const fixtureProps = "# OSCAR 19 properties\n# keep this comment\nbuttons_on_right=true\nTOTP=0\nDOCUMENT_DIR=/var/lib/OscarDocument/oscar/document/\n"

// host is a fixture OSCAR host: oscar.properties, a config pointing emrkit at temp dirs, and
// an OSCAR database on a private MariaDB.
type host struct {
	dir, props, config, state, cron string
	srv                             *mariadbtest.Server
	db                              string
}

var dbSeq atomic.Int64

func newHost(t *testing.T, srv *mariadbtest.Server) host {
	t.Helper()
	h := host{dir: t.TempDir(), srv: srv, db: fmt.Sprintf("oscar_%d", dbSeq.Add(1))}
	h.props = filepath.Join(h.dir, "oscar.properties")
	h.config = filepath.Join(h.dir, "emrkit.yaml")
	h.state = filepath.Join(h.dir, "state")
	h.cron = filepath.Join(h.dir, "emrkit-cron")
	must(t, os.WriteFile(h.props, []byte(fixtureProps), 0o640))
	dbc := srv.CreateDatabase(t, h.db)
	oscarfixture.Create(t, srv.DB(t, h.db), false)
	// firewall off: no test runs ufw in the host's network namespace.
	cfg := fmt.Sprintf("database: {socket: %s, name: %s}\noscar: {properties: %s}\nfirewall: {enable: false}\n"+
		"paths: {state_dir: %s, backup_dir: %s/backups, cron_file: %s}\n",
		dbc.Socket, h.db, h.props, h.state, h.dir, h.cron)
	must(t, os.WriteFile(h.config, []byte(cfg), 0o600))
	return h
}

// dump is the host's OSCAR tables, for before/after comparison.
func (h host) dump(t *testing.T) string {
	return h.srv.Dump(t, h.db, "security", "SecurityArchive")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
	killed         bool
}

func run(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
		}
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func read(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

func TestApplyTwiceSecondChangesNothing(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	srv := mariadbtest.Start(t)
	h := newHost(t, srv)
	before := h.dump(t)
	r := run(t, bin, nil, "--config", h.config, "apply")
	if r.code != 0 || !strings.Contains(r.stdout, "applied 5") {
		t.Fatalf("first apply: %+v", r)
	}
	want := strings.Replace(fixtureProps, "TOTP=0", "TOTP=1", 1)
	if got := read(t, h.props); got != want {
		t.Fatalf("properties after apply:\n%s", got)
	}
	if !strings.Contains(read(t, h.cron), "2fa sync-pins --for 60s") {
		t.Fatal("cron entry not installed")
	}
	r = run(t, bin, nil, "--config", h.config, "apply")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to change: 5 of 5") {
		t.Fatalf("second apply: %+v", r)
	}
	journal := read(t, filepath.Join(h.state, "journal.json"))
	r = run(t, bin, nil, "--config", h.config, "status")
	if r.code != 0 || len(regexp.MustCompile(`(?m)^done +matches `).FindAllString(r.stdout, -1)) != 5 {
		t.Fatalf("status: %+v", r)
	}
	r = run(t, bin, nil, "--config", h.config, "status", "--json")
	if r.code != 0 || strings.Count(r.stdout, `"host": "matches"`) != 5 || strings.Contains(r.stdout, "secret") {
		t.Fatalf("status --json: %+v", r)
	}
	if read(t, filepath.Join(h.state, "journal.json")) != journal {
		t.Fatal("status changed the journal")
	}
	r = run(t, bin, nil, "--config", h.config, "revert", "--all", "--dry-run")
	if r.code != 0 || read(t, h.props) != want || !strings.Contains(r.stdout, "would undo 5") {
		t.Fatalf("dry-run revert: %+v", r)
	}
	r = run(t, bin, nil, "--config", h.config, "revert", "--all")
	if r.code != 0 || read(t, h.props) != fixtureProps {
		t.Fatalf("revert: %+v\n%s", r, read(t, h.props))
	}
	if h.dump(t) != before {
		t.Fatal("database differs from before apply after revert --all")
	}
	if _, err := os.Stat(h.cron); !os.IsNotExist(err) {
		t.Fatal("cron entry left behind")
	}
}

func TestStatusReportsDriftWithExit3(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	h := newHost(t, mariadbtest.Start(t))
	run(t, bin, nil, "--config", h.config, "apply")
	must(t, os.WriteFile(h.props, []byte(strings.Replace(read(t, h.props), "TOTP=1", "TOTP=2", 1)), 0o640))
	r := run(t, bin, nil, "--config", h.config, "status")
	if r.code != 3 || !strings.Contains(r.stdout, "drift") {
		t.Fatalf("status after drift: %+v", r)
	}
	// The admin changed it: revert keeps their value and undoes the rest.
	r = run(t, bin, nil, "--config", h.config, "revert", "--all")
	if r.code != 0 || !strings.Contains(r.stdout, "undone 4, kept 1") {
		t.Fatalf("revert: %+v", r)
	}
	if !strings.Contains(read(t, h.props), "TOTP=2") {
		t.Fatal("the admin's value was overwritten")
	}
}

func TestRevertNewerThan(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	h := newHost(t, mariadbtest.Start(t))
	before := h.dump(t)
	run(t, bin, nil, "--config", h.config, "apply")
	if r := run(t, bin, nil, "--config", h.config, "revert", "--newer-than", "0.1.0"); r.code != 0 || !strings.Contains(read(t, h.props), "TOTP=1") {
		t.Fatalf("entries since 0.1.0 are not newer than 0.1.0: %+v", r)
	}
	if r := run(t, bin, nil, "--config", h.config, "revert", "--newer-than", "0.0.9"); r.code != 0 || read(t, h.props) != fixtureProps || h.dump(t) != before {
		t.Fatalf("revert --newer-than 0.0.9: %+v", r)
	}
	if r := run(t, bin, nil, "--config", h.config, "revert", "--newer-than", "not a version!"); r.code != 2 {
		t.Fatalf("bad version: %+v", r)
	}
}

// TestKillNineAtEveryPointConverges kills apply and revert with SIGKILL at every journal
// point in turn; re-running must reach the uninterrupted run's result, and the journal must
// still undo everything exactly.
func TestKillNineAtEveryPointConverges(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1", "faultinject")
	srv := mariadbtest.Start(t)
	h := newHost(t, srv)
	r := run(t, bin, []string{"EMRKIT_FAULT=list"}, "--config", h.config, "apply")
	points := strings.Count(r.stderr, "fault point")
	if r.code != 0 || points < 10 {
		t.Fatalf("listing fault points: %+v", r)
	}
	applied := read(t, h.props)
	r = run(t, bin, []string{"EMRKIT_FAULT=list"}, "--config", h.config, "revert", "--all")
	undoPoints := strings.Count(r.stderr, "fault point")

	for n := 1; n <= points; n++ {
		h := newHost(t, srv)
		before := h.dump(t)
		r := run(t, bin, []string{fmt.Sprintf("EMRKIT_FAULT=%d", n)}, "--config", h.config, "apply")
		if !r.killed {
			t.Fatalf("apply point %d: not killed: %+v", n, r)
		}
		if r := run(t, bin, nil, "--config", h.config, "apply"); r.code != 0 {
			t.Fatalf("re-run after kill at %d: %+v", n, r)
		}
		if got := read(t, h.props); got != applied {
			t.Fatalf("kill at %d: converged to\n%s\nwant\n%s", n, got, applied)
		}
		// status compares every journal entry with the host: the enrolled secret in the
		// database is the one the journal recorded before the kill.
		if r := run(t, bin, nil, "--config", h.config, "status"); r.code != 0 {
			t.Fatalf("status after kill at %d: %+v", n, r)
		}
		run(t, bin, nil, "--config", h.config, "revert", "--all")
		if got := read(t, h.props); got != fixtureProps || h.dump(t) != before {
			t.Fatalf("revert after kill at %d did not restore the host", n)
		}
	}
	for n := 1; n <= undoPoints; n++ {
		h := newHost(t, srv)
		before := h.dump(t)
		run(t, bin, nil, "--config", h.config, "apply")
		r := run(t, bin, []string{fmt.Sprintf("EMRKIT_FAULT=%d", n)}, "--config", h.config, "revert", "--all")
		if !r.killed {
			t.Fatalf("revert point %d: not killed: %+v", n, r)
		}
		if r := run(t, bin, nil, "--config", h.config, "revert", "--all"); r.code != 0 {
			t.Fatalf("revert re-run after kill at %d: %+v", n, r)
		}
		if got := read(t, h.props); got != fixtureProps || h.dump(t) != before {
			t.Fatalf("revert killed at %d did not converge to the original host", n)
		}
	}
	t.Logf("fault points exercised: %d in apply, %d in revert", points, undoPoints)
}

var oneLine = regexp.MustCompile(`^emrkit: [^\n]+\n$`)

func TestBadInputOneLineNonZeroJournalTruthful(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	srv := mariadbtest.Start(t)
	cases := []struct {
		name  string
		setup func(t *testing.T, h host)
		code  int
		want  string
	}{
		{"invalid config value", func(t *testing.T, h host) {
			cfg := strings.Replace(read(t, h.config), "firewall: {enable: false}", "firewall: {enable: false, https_port: abc}", 1)
			must(t, os.WriteFile(h.config, []byte(cfg), 0o600))
		}, 1, `firewall.https_port: "abc" is not a port (1-65535)`},
		{"missing properties file", func(t *testing.T, h host) {
			must(t, os.Remove(h.props))
		}, 1, "set oscar.properties in the emrkit config"},
		{"corrupt journal", func(t *testing.T, h host) {
			must(t, os.MkdirAll(h.state, 0o700))
			must(t, os.WriteFile(filepath.Join(h.state, "journal.json"), []byte("{garbage"), 0o600))
		}, 1, "is corrupt"},
		{"unreadable journal", func(t *testing.T, h host) {
			must(t, os.MkdirAll(filepath.Join(h.state, "journal.json"), 0o700))
		}, 1, "is unreadable"},
		{"missing explicit config", func(t *testing.T, h host) {
			must(t, os.Remove(h.config))
		}, 1, "no such file"},
		{"user that does not exist", func(t *testing.T, h host) {
			must(t, os.WriteFile(h.config, []byte(read(t, h.config)+"totp: {users: [oscardoc, ghost]}\n"), 0o600))
		}, 1, `no such OSCAR user "ghost" in security; fix totp.users`},
		{"user name with a quote", func(t *testing.T, h host) {
			must(t, os.WriteFile(h.config, []byte(read(t, h.config)+"totp: {users: [\"o'brien\"]}\n"), 0o600))
		}, 1, `totp.users[0]: "o'brien" is not an OSCAR user name`},
		{"database without a security table", func(t *testing.T, h host) {
			h.srv.CreateDatabase(t, h.db+"_empty")
			cfg := strings.Replace(read(t, h.config), "name: "+h.db, "name: "+h.db+"_empty", 1)
			must(t, os.WriteFile(h.config, []byte(cfg), 0o600))
		}, 1, "has no security table; set database.name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHost(t, srv)
			c.setup(t, h)
			before := snapshot(t, h.dir) + h.dump(t)
			r := run(t, bin, nil, "--config", h.config, "apply")
			if r.code != c.code || !strings.Contains(r.stderr, c.want) || !oneLine.MatchString(r.stderr) {
				t.Fatalf("got code %d stderr %q, want code %d and one line containing %q", r.code, r.stderr, c.code, c.want)
			}
			if after := snapshot(t, h.dir) + h.dump(t); after != before {
				t.Fatalf("failed run changed files:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestConcurrentEmrkitRefused(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	h := newHost(t, mariadbtest.Start(t))
	must(t, os.MkdirAll(h.state, 0o700))
	// Another emrkit holding the journal lock, as flock(1) stands in for it.
	holder := exec.Command("sh", "-c", `exec 9>>"$1" && flock -n 9 && echo locked && exec sleep 30`, "sh", filepath.Join(h.state, "journal.lock"))
	stdout, _ := holder.StdoutPipe()
	must(t, holder.Start())
	defer func() { holder.Process.Kill(); holder.Wait() }()
	buf := make([]byte, 7)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("lock holder did not start: %q %v", buf, err)
	}
	r := run(t, bin, nil, "--config", h.config, "apply")
	if r.code != 1 || !strings.Contains(r.stderr, "another emrkit is running") || !oneLine.MatchString(r.stderr) {
		t.Fatalf("concurrent apply: %+v", r)
	}
	if read(t, h.props) != fixtureProps {
		t.Fatal("concurrent apply changed the host")
	}
}

// snapshot lists every file under dir with its mode and content, for before/after
// comparison. The journal's lock file is left out: taking the lock is not a change.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == "journal.lock" {
			return err
		}
		fi, _ := d.Info()
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s %v %q; ", strings.TrimPrefix(p, dir), fi.Mode(), data)
		return nil
	})
	return b.String()
}

// TestUsageErrorsExit2: a missing or unknown subcommand is a usage error, never help with
// exit 0 that a script would take for success.
func TestUsageErrorsExit2(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	for _, args := range [][]string{{"bogus"}, {"2fa"}, {"2fa", "foo"}, {"firewall"}, {"pgp", "bogus"}, {"revert"}, {"apply", "--no-such-flag"}} {
		r := run(t, bin, nil, args...)
		if r.code != 2 || !oneLine.MatchString(r.stderr) {
			t.Errorf("emrkit %v: exit %d, stderr %q; want 2 and one line", args, r.code, r.stderr)
		}
	}
}

// TestDevelopmentBuildPlansTheNewestRelease: `go build` / `go install` give a binary without
// a version stamp. It must plan exactly what the newest release of the tree plans (it once
// planned nothing and said "nothing to change"), and say it is a development build.
func TestDevelopmentBuildPlansTheNewestRelease(t *testing.T) {
	newest, err := release.Newest(emrkit.Changelog)
	must(t, err)
	dev := testbin.Emrkit(t, "")
	packaged := testbin.Emrkit(t, newest+"-1")
	r := run(t, dev, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "emrkit "+newest+"-1~dev (development build") {
		t.Fatalf("version: %+v", r)
	}
	h := newHost(t, mariadbtest.Start(t))
	// pgp off: the fixture host has no Tomcat user to set GnuPG up for.
	must(t, os.WriteFile(h.config, append([]byte(read(t, h.config)), "pgp: {mode: none}\n"...), 0o600))
	want := run(t, packaged, nil, "--config", h.config, "apply", "--dry-run")
	got := run(t, dev, nil, "--config", h.config, "apply", "--dry-run")
	if want.code != 0 || !strings.Contains(want.stdout, "dry run: 6 to apply") {
		t.Fatalf("packaged %s plans: %+v", newest, want)
	}
	if got.code != want.code || got.stdout != want.stdout {
		t.Fatalf("development build plans differently from %s-1:\n%+v\nwant\n%+v", newest, got, want)
	}
}

// TestSyncPinsLeavesOthersEnrolmentsAlone: a user whose 2FA OSCAR 19.5+'s own screens switched
// on (static PIN 0000) is not emrkit's; apply → sync-pins → revert --all must leave the whole
// database as it was, on both table shapes (sync-pins once wrote codes into that user's PIN
// and nothing gave it back).
func TestSyncPinsLeavesOthersEnrolmentsAlone(t *testing.T) {
	bin := testbin.Emrkit(t, "0.1.0-1")
	srv := mariadbtest.Start(t)
	for _, modern := range []bool{false, true} {
		name := map[bool]string{false: "pre2fa", true: "oscar195"}[modern]
		t.Run(name, func(t *testing.T) {
			h := newHost(t, srv)
			db := srv.DB(t, h.db)
			if modern {
				// the 2FA columns exist and admin2fa is enabled by OSCAR, with its own secret
				for _, q := range []string{
					"DROP TABLE security", "DROP TABLE SecurityArchive",
				} {
					_, err := db.Exec(q)
					must(t, err)
				}
				oscarfixture.Create(t, db, true)
				_, err := db.Exec("INSERT INTO security (user_name, password, provider_no, pin, totp_enabled, totp_secret) VALUES ('admin2fa', '{sha}a', '102', '0000', 1, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP')")
				must(t, err)
			} else {
				_, err := db.Exec("INSERT INTO security (user_name, password, provider_no, pin) VALUES ('admin2fa', '{sha}a', '102', '0000')")
				must(t, err)
			}
			before := srv.Dump(t, h.db)
			if r := run(t, bin, nil, "--config", h.config, "apply"); r.code != 0 {
				t.Fatalf("apply: %+v", r)
			}
			if r := run(t, bin, nil, "--config", h.config, "2fa", "sync-pins"); r.code != 0 {
				t.Fatalf("sync-pins: %+v", r)
			}
			var pin, enrolled string
			must(t, db.QueryRow("SELECT pin FROM security WHERE user_name = 'admin2fa'").Scan(&pin))
			must(t, db.QueryRow("SELECT pin FROM security WHERE user_name = 'oscardoc'").Scan(&enrolled))
			if pin != "0000" {
				t.Fatalf("sync-pins wrote %q into admin2fa's PIN, which emrkit did not enrol", pin)
			}
			if enrolled == "1117" {
				t.Fatal("sync-pins did not cycle the PIN of oscardoc, whom emrkit enrolled")
			}
			if r := run(t, bin, nil, "--config", h.config, "revert", "--all"); r.code != 0 {
				t.Fatalf("revert: %+v", r)
			}
			if after := srv.Dump(t, h.db); after != before {
				t.Fatalf("full dump after apply, sync-pins, revert differs:\n--- before\n%s\n--- after\n%s", before, after)
			}
		})
	}
}
