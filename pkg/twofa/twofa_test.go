package twofa

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/totp"
)

type fixture struct {
	srv   *mariadbtest.Server
	db    *DB
	sql   *sql.DB
	j     *journal.Journal
	state string
	uris  *URIFile
}

func newFixture(t *testing.T, srv *mariadbtest.Server, name string, modern bool) *fixture {
	t.Helper()
	cfg := srv.CreateDatabase(t, name)
	raw := srv.DB(t, name)
	oscarfixture.Create(t, raw, modern)
	state := t.TempDir()
	j, err := journal.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	db := NewDB(cfg)
	t.Cleanup(func() { db.Close() })
	return &fixture{srv: srv, db: db, sql: raw, j: j, state: state, uris: &URIFile{Path: filepath.Join(state, URIFileName)}}
}

func (f *fixture) steps(users ...string) []step.Step {
	s := []step.Step{
		ColumnsStep{DB: f.db, Table: "security", Required: true, SinceVersion: "0.1.0"},
		ColumnsStep{DB: f.db, Table: "SecurityArchive", SinceVersion: "0.1.0"},
	}
	for _, u := range users {
		s = append(s, UserStep{DB: f.db, User: u, URIs: f.uris, Issuer: "OSCAR", SinceVersion: "0.1.0"})
	}
	return s
}

func (f *fixture) runner() *step.Runner {
	backupDir := filepath.Join(f.state, "backups")
	return &step.Runner{Journal: f.j, Out: os.Stderr, Undoers: step.Registry{
		ColumnsKind: ColumnsUndoer{DB: f.db, Backup: func(ctx context.Context, table string) (string, error) {
			return filepath.Join(backupDir, table), nil // the backup package has its own tests
		}},
		UserKind: UserUndoer{DB: f.db, URIs: f.uris},
	}}
}

func (f *fixture) secret(t *testing.T, user string) string {
	t.Helper()
	var s sql.NullString
	if err := f.sql.QueryRow("SELECT totp_secret FROM security WHERE user_name = ?", user).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s.String
}

func TestApplyEnrolSyncUndoRestoresDump(t *testing.T) {
	srv := mariadbtest.Start(t)
	for _, shape := range []struct {
		name   string
		modern bool
	}{{"pre2fa", false}, {"oscar195", true}} {
		t.Run(shape.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, srv, "oscar_"+shape.name, shape.modern)
			// OSCAR 19.5+'s own screens switched 2FA on for admin2fa, who keeps the static PIN
			// 0000: emrkit did not enrol them, so it must never write their PIN (it could not
			// give it back). On the older shape the user has a PIN and no 2FA.
			const theirs = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
			if shape.modern {
				mustExec(t, f.sql, "INSERT INTO security (user_name, password, provider_no, pin, totp_enabled, totp_secret) VALUES ('admin2fa', '{sha}a', '102', '0000', 1, ?)", theirs)
			} else {
				mustExec(t, f.sql, "INSERT INTO security (user_name, password, provider_no, pin) VALUES ('admin2fa', '{sha}a', '102', '0000')")
			}
			before := srv.Dump(t, f.db.Config.Name, "security", "SecurityArchive")

			rep, err := f.runner().Apply(ctx, f.steps("oscardoc", "nurse"))
			if err != nil {
				t.Fatal(err)
			}
			wantApplied := 4
			if shape.modern {
				wantApplied = 2 // the columns are OSCAR's own: nothing to add, nothing journaled
			}
			if rep.Applied != wantApplied {
				t.Fatalf("applied %d, want %d", rep.Applied, wantApplied)
			}
			rep, err = f.runner().Apply(ctx, f.steps("oscardoc", "nurse"))
			if err != nil || rep.Changed() {
				t.Fatalf("re-apply changed something: %+v %v", rep, err)
			}
			secret := f.secret(t, "oscardoc")
			if err := totp.ValidSecret(secret); err != nil || len(secret) != 32 {
				t.Fatalf("secret %q: %v", secret, err)
			}
			uris, err := os.ReadFile(f.uris.Path)
			if err != nil || !strings.Contains(string(uris), "oscardoc\totpauth://totp/OSCAR:oscardoc?") {
				t.Fatalf("URI file: %q %v", uris, err)
			}
			if fi, _ := os.Stat(f.uris.Path); fi.Mode().Perm() != 0o600 {
				t.Fatalf("URI file mode %v", fi.Mode())
			}

			now := time.Now()
			code, _ := totp.Code(secret, now)
			if _, ok, _ := totp.Verify(secret, code, now, 0); !ok {
				t.Fatal("code of the enrolled secret does not verify")
			}
			props := filepath.Join(t.TempDir(), "oscar.properties")
			os.WriteFile(props, []byte("TOTP=1\n"), 0o644)
			sy := &Syncer{DB: f.sql, Enrolled: Enrolled(f.j.Entries(), f.db.Config.Name), Properties: props, Now: func() time.Time { return now }}
			if n, err := sy.Once(ctx); err != nil || n != 2 {
				t.Fatalf("sync-pins: %d %v", n, err)
			}
			var pin string
			f.sql.QueryRow("SELECT pin FROM security WHERE user_name='oscardoc'").Scan(&pin)
			if pin != code {
				t.Fatalf("pin %q, want current code %q", pin, code)
			}
			f.sql.QueryRow("SELECT pin FROM security WHERE user_name='admin2fa'").Scan(&pin)
			if pin != "0000" {
				t.Fatalf("sync-pins wrote %q into the PIN of a user emrkit did not enrol", pin)
			}

			rep, err = f.runner().Revert(ctx, func(journal.Entry) bool { return true })
			if err != nil || rep.Kept != 0 {
				t.Fatalf("revert: %+v %v", rep, err)
			}
			if after := srv.Dump(t, f.db.Config.Name, "security", "SecurityArchive"); after != before {
				t.Fatalf("dump after undo differs:\n--- before\n%s\n--- after\n%s", before, after)
			}
			if _, err := os.Stat(f.uris.Path); !os.IsNotExist(err) {
				t.Fatal("URI file left behind after undo")
			}
		})
	}
}

func TestUndoKeepsSecretChangedByOSCAR(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_cas", false)
	if _, err := f.runner().Apply(ctx, f.steps("oscardoc")); err != nil {
		t.Fatal(err)
	}
	// OSCAR's UI re-issues the secret: that secret is the clinic's now.
	other, _ := totp.NewSecret(strings.NewReader(strings.Repeat("x", 20)))
	f.sql.Exec("UPDATE security SET totp_secret = ? WHERE user_name='oscardoc'", other)
	rep, err := f.runner().Revert(ctx, func(journal.Entry) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kept != 2 { // the user's enrolment, and the columns that hold it
		t.Fatalf("want 2 kept, got %+v", rep)
	}
	if f.secret(t, "oscardoc") != other {
		t.Fatal("undo overwrote a secret emrkit did not write")
	}
}

// TestSyncPinsCyclesOnlyWhatItCanGiveBack: sync-pins writes a PIN only while the user's
// secret is the one emrkit's journal says it wrote — not for a user OSCAR enabled (even one
// listed in totp.users, whom apply finds already enrolled), not after OSCAR re-issued the
// secret, and not after an undo gave the PIN back (a sync-pins still running with the
// journal it read before the undo).
func TestSyncPinsCyclesOnlyWhatItCanGiveBack(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_pins", true)
	mustExec(t, f.sql, "INSERT INTO security (user_name, password, provider_no, pin, totp_enabled, totp_secret) VALUES ('admin2fa', '{sha}a', '102', '0000', 1, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP')")
	if _, err := f.runner().Apply(ctx, f.steps("oscardoc", "nurse", "admin2fa")); err != nil {
		t.Fatal(err)
	}
	props := filepath.Join(t.TempDir(), "oscar.properties")
	os.WriteFile(props, []byte("TOTP=1\n"), 0o644)
	pins := func() map[string]string {
		t.Helper()
		rows, err := f.sql.Query("SELECT user_name, COALESCE(pin, '') FROM security")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]string{}
		for rows.Next() {
			var u, p string
			rows.Scan(&u, &p)
			m[u] = p
		}
		return m
	}
	now := time.Now()
	stale := Enrolled(f.j.Entries(), f.db.Config.Name)
	if _, ok := stale["admin2fa"]; ok || len(stale) != 2 {
		t.Fatalf("enrolled by emrkit: %v", stale)
	}
	// OSCAR's UI re-issues nurse's secret: nurse's PIN is no longer emrkit's to cycle.
	other, _ := totp.NewSecret(strings.NewReader(strings.Repeat("y", 20)))
	mustExec(t, f.sql, "UPDATE security SET totp_secret = ? WHERE user_name = 'nurse'", other)
	sy := &Syncer{DB: f.sql, Enrolled: stale, Properties: props, Now: func() time.Time { return now }}
	if n, err := sy.Once(ctx); err != nil || n != 1 {
		t.Fatalf("sync-pins: %d %v", n, err)
	}
	code, _ := totp.Code(f.secret(t, "oscardoc"), now)
	if p := pins(); p["oscardoc"] != code || p["nurse"] != "4321" || p["admin2fa"] != "0000" || p["doc2"] != "" {
		t.Fatalf("PINs after sync: %v (oscardoc's code %s)", p, code)
	}
	if _, err := f.runner().Revert(ctx, func(journal.Entry) bool { return true }); err != nil {
		t.Fatal(err)
	}
	given := pins()
	if given["oscardoc"] != "1117" {
		t.Fatalf("undo did not give oscardoc's PIN back: %v", given)
	}
	if _, err := sy.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if p := pins(); p["oscardoc"] != "1117" {
		t.Fatalf("a sync-pins holding the journal of before the undo overwrote the PIN it gave back: %v", p)
	}
}

func TestResumedEnrolmentWritesTheJournaledSecret(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_resume", true)
	s := UserStep{DB: f.db, User: "oscardoc", URIs: f.uris, Issuer: "OSCAR", SinceVersion: "0.1.0"}
	desired, before, err := s.Capture(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Crash after the pending record, before Apply: the re-run must write that same secret.
	f.j.Put(journal.Entry{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), Since: "0.1.0", State: journal.Pending, Desired: desired, Before: before})
	if rep, err := f.runner().Apply(ctx, []step.Step{s}); err != nil || rep.Finished != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	if !strings.Contains(string(desired), f.secret(t, "oscardoc")) {
		t.Fatal("resumed run wrote a different secret than the journal holds")
	}
}

func TestBadInput(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_bad", true)
	before := srv.Dump(t, f.db.Config.Name, "security")
	for user, want := range map[string]string{
		"nobody":         "no such OSCAR user \"nobody\"",
		"o'brien":        `user name "o'brien"`,
		"x; DROP TABLE":  `user name "x; DROP TABLE"`,
		"oscardoc' --  ": `user name`,
	} {
		_, err := f.runner().Apply(ctx, f.steps(user))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("user %q: got %v, want %q", user, err, want)
		}
	}
	if srv.Dump(t, f.db.Config.Name, "security") != before || len(f.j.Entries()) != 0 {
		t.Fatal("bad input changed the database or the journal")
	}

	// A database without OSCAR's security table: the wrong database.
	empty := srv.CreateDatabase(t, "not_oscar")
	_, err := f.runner().Apply(ctx, []step.Step{ColumnsStep{DB: NewDB(empty), Table: "security", Required: true}})
	if err == nil || !strings.Contains(err.Error(), "has no security table; set database.name") {
		t.Fatalf("missing table: %v", err)
	}

	// MariaDB down: the steps wait (deferred) rather than fail an install.
	down := NewDB(f.db.Config)
	srv.Stop()
	_, err = down.Get(ctx)
	var d *step.DeferredError
	if !errors.As(err, &d) || !strings.Contains(d.Reason, "cannot reach the database server") {
		t.Fatalf("database down: %v", err)
	}
}

// TestManyInstallPurgeCycles: each purge drops the columns, each install adds them back; the
// table must not wear out (MariaDB's instant DROP COLUMN did, at about 28 cycles).
func TestManyInstallPurgeCycles(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_cycles", false)
	before := srv.Dump(t, f.db.Config.Name, "security", "SecurityArchive")
	for i := range 40 {
		if _, err := f.runner().Apply(ctx, f.steps()); err != nil {
			t.Fatalf("cycle %d: apply: %v", i, err)
		}
		if _, err := f.runner().Revert(ctx, func(journal.Entry) bool { return true }); err != nil {
			t.Fatalf("cycle %d: revert: %v", i, err)
		}
	}
	if srv.Dump(t, f.db.Config.Name, "security", "SecurityArchive") != before {
		t.Fatal("tables differ after 40 cycles")
	}
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
