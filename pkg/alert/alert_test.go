package alert

import (
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/doctor"
)

func TestRegressionsArePassToFailOnly(t *testing.T) {
	before := doctor.Report{Checks: []doctor.Check{{ID: "a", Status: doctor.Pass}, {ID: "b", Status: doctor.Pass},
		{ID: "c", Status: doctor.Fail}, {ID: "d", Status: doctor.Warn}}}
	now := doctor.Report{Checks: []doctor.Check{{ID: "a", Status: doctor.Fail}, {ID: "b", Status: doctor.Pass},
		{ID: "c", Status: doctor.Fail}, {ID: "d", Status: doctor.Fail}, {ID: "e", Status: doctor.Fail}}}
	got := Regressions(before, now)
	if len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("regressions %v, want only a (c was failing, d warned, e is new)", got)
	}
	if len(Regressions(now, now)) != 0 {
		t.Fatal("a check failing run after run is a regression once, not every run")
	}
}

// The mail is plain text marked auto-generated, and withholds every value a line quotes.
func TestMessageWithholdsValues(t *testing.T) {
	m := Mailer{To: "root", Host: "clinic\nBcc: x"}
	msg := string(m.Message(Report{Subject: "the scheduled restore test failed\nBcc: eve",
		Lines: []string{"ERROR 1062 (23000): Duplicate entry 'Smith-1961' for key 'name'", "fix: emrkit backup verify"}}))
	head, body, ok := strings.Cut(msg, "\n\n")
	if !ok || strings.Contains(head, "Bcc") && !strings.Contains(head, "Subject: emrkit on clinic Bcc: x: the scheduled restore test failed Bcc: eve") {
		t.Fatalf("headers:\n%s", head)
	}
	if n := strings.Count(head, "\n"); n != 4 {
		t.Fatalf("%d header lines, want 5 (a value made another):\n%s", n+1, head)
	}
	for _, want := range []string{"To: root", "Auto-Submitted: auto-generated", "Content-Type: text/plain; charset=utf-8"} {
		if !strings.Contains(head, want) {
			t.Errorf("no %q in:\n%s", want, head)
		}
	}
	if strings.Contains(body, "Smith") || !strings.Contains(body, "Duplicate entry [value withheld] for key 'name'") || !strings.Contains(body, "fix: emrkit backup verify") {
		t.Fatalf("body:\n%s", body)
	}
}

func TestNoRecipientSendsNothing(t *testing.T) {
	sent, err := Mailer{Sendmail: "/nonexistent/sendmail"}.Send(t.Context(), Report{Subject: "x"})
	if sent || err != nil {
		t.Fatalf("alerts off: sent %v, %v", sent, err)
	}
	_, err = Mailer{Sendmail: "/nonexistent/sendmail", To: "root"}.Send(t.Context(), Report{Subject: "x"})
	if err == nil || !strings.Contains(err.Error(), "mail the alert to root with /nonexistent/sendmail") {
		t.Fatalf("a missing sendmail: %v", err)
	}
}
