// Package alert tells someone when scheduled work went wrong: a scheduled backup or restore
// test that failed, or a doctor check that passed and now fails. It mails a short report the
// way Debian's cron mails a job's output — through the MTA's sendmail, to root unless
// alerts.mail_to says otherwise — and every line of it is redacted first, so no value a
// server error quoted (a patient's name in "Duplicate entry") reaches a mailbox.
//
// It also keeps the last scheduled doctor report (doctor-last.json in the state dir), which a
// regression is measured against.
package alert

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/doctor"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/redact"
)

// Mailer sends reports to one recipient with a sendmail program.
type Mailer struct {
	Sendmail string
	// To is the recipient; "" sends nothing (alerts.mail_to: off).
	To string
	// Host names the server in the subject.
	Host string
}

// NewMailer is the mailer cfg's alerts section describes, for this host.
func NewMailer(cfg config.Config) Mailer {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return Mailer{Sendmail: cfg.Alerts.Program(), To: cfg.Alerts.Recipient(), Host: host}
}

// Report is what one alert says: a subject, then lines (what failed, the fix).
type Report struct {
	Subject string
	Lines   []string
}

// Send mails r; with no recipient it sends nothing and says so (sent false).
func (m Mailer) Send(ctx context.Context, r Report) (sent bool, err error) {
	if m.To == "" {
		return false, nil
	}
	cmd := exec.CommandContext(ctx, m.Sendmail, "-i", "--", m.To)
	cmd.Stdin = bytes.NewReader(m.Message(r))
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("mail the alert to %s with %s: %v%s", m.To, m.Sendmail, err, said(out))
	}
	return true, nil
}

func said(out []byte) string {
	if s := strings.TrimSpace(string(out)); s != "" {
		return ": " + redact.Line(s)
	}
	return ""
}

// Message is r as a mail: plain text, marked auto-generated (RFC 3834) so that no
// vacation responder answers it, every line redacted and bounded.
func (m Mailer) Message(r Report) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "To: %s\n", m.To)
	fmt.Fprintf(&b, "Subject: emrkit on %s: %s\n", oneLine(m.Host), withheld(r.Subject))
	b.WriteString("Auto-Submitted: auto-generated\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n")
	for _, l := range r.Lines {
		b.WriteString(withheld(l) + "\n")
	}
	fmt.Fprintf(&b, "\n-- \nemrkit on %s. Alerts go to alerts.mail_to in /etc/emrkit/emrkit.yaml (%q sends none).\n", oneLine(m.Host), "off")
	return b.Bytes()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// withheld is s on one bounded line with every value it quotes withheld.
func withheld(s string) string { return redact.Line(redact.SQLText(s)) }

// LastDoctor is the file holding the last scheduled doctor report.
const LastDoctor = "doctor-last.json"

// Regressions are the checks that passed in before and fail in now.
func Regressions(before, now doctor.Report) []doctor.Check {
	passed := map[string]bool{}
	for _, c := range before.Checks {
		passed[c.ID] = c.Status == doctor.Pass
	}
	var out []doctor.Check
	for _, c := range now.Checks {
		if c.Status == doctor.Fail && passed[c.ID] {
			out = append(out, c)
		}
	}
	return out
}

// RegressionReport is the alert for checks that passed last time and fail now.
func RegressionReport(checks []doctor.Check) Report {
	r := Report{Subject: fmt.Sprintf("%d doctor check(s) passed last time and fail now", len(checks))}
	for _, c := range checks {
		r.Lines = append(r.Lines, fmt.Sprintf("FAIL %s (%s): %s", c.ID, c.Title, c.Finding))
		if c.Fix != "" {
			r.Lines = append(r.Lines, "     fix: "+c.Fix)
		}
	}
	r.Lines = append(r.Lines, "", "Run emrkit doctor for every check.")
	return r
}

// LoadLastDoctor reads the last scheduled doctor report (ok false: none yet).
func LoadLastDoctor(stateDir string) (doctor.Report, bool, error) {
	var r doctor.Report
	ok, err := fsutil.LoadRecord(stateDir, LastDoctor, &r)
	if err != nil {
		return r, false, fmt.Errorf("%w; it is rewritten by the next emrkit doctor --alert", err)
	}
	return r, ok, nil
}

// SaveLastDoctor keeps r for the next scheduled run (0600: findings name files and users).
func SaveLastDoctor(stateDir string, r doctor.Report) error {
	return fsutil.SaveRecord(stateDir, LastDoctor, r)
}
