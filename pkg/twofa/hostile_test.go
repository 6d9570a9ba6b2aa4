package twofa

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

// TestWrongTypedColumnsAreRefusedBeforeAnyChange: a 2FA column the table already has with a
// type unfit for what emrkit writes stops the plan in preflight, naming the column, the type
// found and the type wanted; the other columns are not added and nothing is journaled.
func TestWrongTypedColumnsAreRefusedBeforeAnyChange(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	for _, c := range []struct {
		name, alter, want string
	}{
		{"secret_int", "ALTER TABLE security ADD totp_secret INT NULL",
			"security.totp_secret is int(11), emrkit needs a string column of at least 32 characters (varchar(254)); fix the column or drop it"},
		{"secret_short", "ALTER TABLE security ADD totp_secret VARCHAR(16) NULL",
			"security.totp_secret is varchar(16), emrkit needs a string column of at least 32 characters"},
		{"secret_blob", "ALTER TABLE security ADD totp_secret VARBINARY(254) NULL",
			"security.totp_secret is varbinary(254), emrkit needs a string column"},
		{"enabled_text", "ALTER TABLE security ADD totp_enabled VARCHAR(5) NOT NULL DEFAULT 'no'",
			"security.totp_enabled is varchar(5), emrkit needs an integer column (smallint(1))"},
		{"pin_int", "ALTER TABLE security MODIFY pin INT NULL",
			"security.pin is int(11), emrkit needs a string column of at least 6 characters (varchar(255)); fix the column"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, srv, "oscar_"+c.name, false)
			mustExec(t, f.sql, c.alter)
			before := srv.Dump(t, f.db.Config.Name, "security", "SecurityArchive")
			_, err := f.runner().Apply(ctx, f.steps("oscardoc"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("apply: %v\nwant %q", err, c.want)
			}
			if strings.Contains(err.Error(), "Scan") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not one plain line: %q", err)
			}
			if after := srv.Dump(t, f.db.Config.Name, "security", "SecurityArchive"); after != before {
				t.Fatalf("a refused plan changed the tables:\n%s", after)
			}
			if n := len(f.j.Entries()); n != 0 {
				t.Fatalf("a refused plan journaled %d entries", n)
			}
		})
	}
}

// TestDoneEnrolmentKeepsNoSecretInTheJournal: once an enrolment is done, journal.json holds
// the SHA-256 of the secret and not the secret; undo still recognises emrkit's secret by it.
// A journal an older emrkit wrote whole is sealed by the next run, but not by a dry run.
func TestDoneEnrolmentKeepsNoSecretInTheJournal(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_sealed", true)
	journalFile := filepath.Join(f.state, "journal.json")
	before := srv.Dump(t, f.db.Config.Name, "security")

	if _, err := f.runner().Apply(ctx, f.steps("oscardoc")); err != nil {
		t.Fatal(err)
	}
	secret := f.secret(t, "oscardoc")
	raw, err := os.ReadFile(journalFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) {
		t.Fatalf("journal.json holds the secret of a done enrolment:\n%s", raw)
	}
	if !strings.Contains(string(raw), `"secret_sha256": "`+SecretDigest(secret)+`"`) &&
		!strings.Contains(string(raw), `"secret_sha256":"`+SecretDigest(secret)+`"`) {
		t.Fatalf("journal.json lacks the secret's digest:\n%s", raw)
	}
	if got := Enrolled(f.j.Entries(), f.db.Config.Name)["oscardoc"]; got != SecretDigest(secret) {
		t.Fatalf("Enrolled = %q, want the digest", got)
	}

	// An entry as 0.6.0 journaled it: done, with the secret.
	s := f.steps("oscardoc")[2].(UserStep)
	e, _ := f.j.Get(s.ID())
	old, _ := json.Marshal(userDesired{Database: f.db.Config.Name, User: "oscardoc", Secret: secret})
	e.Desired = old
	if err := f.j.Put(e); err != nil {
		t.Fatal(err)
	}
	dry := f.runner()
	dry.DryRun = true
	if _, err := dry.Apply(ctx, f.steps("oscardoc")); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(journalFile); !strings.Contains(string(raw), secret) {
		t.Fatal("a dry run rewrote the journal")
	}
	if _, err := f.runner().Apply(ctx, f.steps("oscardoc")); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(journalFile); strings.Contains(string(raw), secret) {
		t.Fatalf("the next run left an older emrkit's secret in the journal:\n%s", raw)
	}

	// Undo compares by digest: the user's state before comes back exactly.
	if rep, err := f.runner().Revert(ctx, func(journal.Entry) bool { return true }); err != nil || rep.Kept != 0 {
		t.Fatalf("revert: %+v %v", rep, err)
	}
	if after := srv.Dump(t, f.db.Config.Name, "security"); after != before {
		t.Fatalf("dump after undo differs:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestPendingEntryWithoutSecretIsRefused: a pending enrolment must hold its secret; one that
// does not (a hand-edited journal) never enables 2FA without one.
func TestPendingEntryWithoutSecretIsRefused(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_nosecret", true)
	s := UserStep{DB: f.db, User: "oscardoc", URIs: f.uris, Issuer: "OSCAR", SinceVersion: "0.1.0"}
	_, b, err := s.Capture(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := json.Marshal(userDesired{Database: f.db.Config.Name, User: "oscardoc", SecretSHA256: SecretDigest("X")})
	f.j.Put(journal.Entry{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), Since: "0.1.0", State: journal.Pending, Desired: d, Before: b})
	before := srv.Dump(t, f.db.Config.Name, "security")
	_, err = f.runner().Apply(ctx, []step.Step{s})
	if err == nil || !strings.Contains(err.Error(), "holds no secret to write; `emrkit 2fa enroll oscardoc --force`") {
		t.Fatalf("apply of a pending entry without a secret: %v", err)
	}
	if srv.Dump(t, f.db.Config.Name, "security") != before {
		t.Fatal("a pending entry without a secret changed the table")
	}
}

// TestUnsealForADowngrade: before a downgrade to a release that predates sealing, a done
// enrolment gets its secret back from the table, as that release's undo needs it; one whose
// secret changed since stays sealed and is reported.
func TestUnsealForADowngrade(t *testing.T) {
	srv := mariadbtest.Start(t)
	ctx := context.Background()
	f := newFixture(t, srv, "oscar_unseal", true)
	if _, err := f.runner().Apply(ctx, f.steps("oscardoc", "nurse")); err != nil {
		t.Fatal(err)
	}
	doc, nurse := f.secret(t, "oscardoc"), f.secret(t, "nurse")
	mustExec(t, f.sql, "UPDATE security SET totp_secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' WHERE user_name = 'nurse'")
	n, left, err := f.runner().Unseal(ctx)
	if err != nil || n != 1 || len(left) != 1 || !strings.Contains(left[0], "#nurse: changed since emrkit wrote it") {
		t.Fatalf("unseal: %d %q %v", n, left, err)
	}
	raw, _ := os.ReadFile(filepath.Join(f.state, "journal.json"))
	if !strings.Contains(string(raw), doc) || strings.Contains(string(raw), nurse) {
		t.Fatalf("journal after unseal:\n%s", raw)
	}
	// As 0.6.0 reads it: the secret under "secret".
	s := f.steps("oscardoc")[2].(UserStep)
	e, _ := f.j.Get(s.ID())
	var old struct{ Secret string }
	if json.Unmarshal(e.Desired, &old) != nil || old.Secret != doc {
		t.Fatalf("0.6.0 would read %+v", old)
	}
	if n, _, _ := f.runner().Unseal(ctx); n != 0 {
		t.Fatalf("a second unseal unsealed %d", n)
	}
}
