// Package doctor owns `emrkit doctor`: the clinic server's security posture, every control of
// the OSCAR and OpenEMR guides as a check that passes, warns or fails, with a one-line finding,
// the command that fixes it, and the HIPAA Security Rule safeguard it serves. It reads and
// never writes: run as a non-root user it checks what that user can read and says what it
// skipped.
package doctor

import (
	"context"
	_ "embed"
	"os"
	"slices"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/redact"
)

// Status is a check's outcome.
type Status string

const (
	Pass Status = "PASS"
	Warn Status = "WARN" // passes, with something the admin should look at
	Fail Status = "FAIL"
	Skip Status = "SKIP" // could not be checked here (not root, a tool missing)
)

// Check is one control.
type Check struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Status    Status `json:"status"`
	Finding   string `json:"finding"`
	Fix       string `json:"fix,omitempty"`
	Safeguard string `json:"safeguard"`
}

// Report is a doctor run.
type Report struct {
	Profile string    `json:"profile"`
	Time    time.Time `json:"time"`
	Seconds float64   `json:"seconds"`
	AsRoot  bool      `json:"as_root"`
	Checks  []Check   `json:"checks"`
	// Passed of Applicable: the checks that ran (skipped ones are not applicable here).
	Passed     int `json:"passed"`
	Applicable int `json:"applicable"`
	Failed     int `json:"failed"`
	Skipped    int `json:"skipped"`
}

// Schema is the JSON schema of `emrkit doctor --json`, shipped in /usr/share/doc/emrkit.
//
//go:embed schema.json
var Schema []byte

// HIPAA Security Rule safeguards (45 CFR 164.308, 164.312) the checks serve.
const (
	hipaaAuth       = "164.312(d) person or entity authentication"
	hipaaAccess     = "164.312(a)(1) access control"
	hipaaUniqueUser = "164.312(a)(2)(i) unique user identification"
	hipaaEncryption = "164.312(a)(2)(iv) encryption and decryption"
	hipaaTransmit   = "164.312(e)(1) transmission security"
	hipaaPasswords  = "164.308(a)(5)(ii)(D) password management"
	hipaaBackup     = "164.308(a)(7)(ii)(A) data backup plan"
	hipaaStorage    = "164.310(d)(2)(iv) data backup and storage"
	hipaaIncident   = "164.308(a)(6)(ii) response and reporting"
	hipaaTesting    = "164.308(a)(7)(ii)(D) testing and revision procedures"
	hipaaEvaluation = "164.308(a)(8) evaluation"
	hipaaRisk       = "164.308(a)(1)(ii)(B) risk management"
	hipaaLogoff     = "164.312(a)(2)(iii) automatic logoff"
	hipaaAudit      = "164.312(b) audit controls"
)

// Env is what doctor reads the host through.
type Env struct {
	Config  config.Config
	Host    plan.Host
	Version string
	Now     func() time.Time
	// ProcNet is where the kernel lists sockets (/proc/net).
	ProcNet string
	// OpenEMRURL is where Apache serves OpenEMR, probed for its denies.
	OpenEMRURL string
	// Verbose names what a finding only counts (OpenEMR's users without MFA).
	Verbose bool
}

// Run checks the host for profile.
func Run(ctx context.Context, env Env, profile string) Report {
	start := time.Now()
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.ProcNet == "" {
		env.ProcNet = "/proc/net"
	}
	r := Report{Profile: profile, Time: env.Now().UTC(), AsRoot: os.Geteuid() == 0}
	h := newHost(ctx, env, profile)
	defer h.close()
	var groups []func() []Check
	if profile == "oscar" {
		groups = append(groups, h.oscar)
	} else {
		groups = append(groups, h.openemr)
	}
	groups = append(groups, h.firewall, h.mariadb, h.mariadbServer, h.journal, h.backups, h.offsite, h.alerts, h.portal)
	for _, g := range groups {
		r.Checks = append(r.Checks, g()...)
	}
	for i, c := range r.Checks {
		// Findings quote files and servers: one bounded line each, in the table and the JSON.
		r.Checks[i].Finding = redact.Line(c.Finding)
		switch c.Status {
		case Skip:
			r.Skipped++
			continue
		case Pass, Warn:
			r.Passed++
		case Fail:
			r.Failed++
		}
		r.Applicable++
	}
	r.Seconds = time.Since(start).Seconds()
	return r
}

// Failing reports whether any check failed (doctor exits 3).
func (r Report) Failing() bool {
	return slices.ContainsFunc(r.Checks, func(c Check) bool { return c.Status == Fail })
}
