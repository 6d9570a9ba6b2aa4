package doctor

import (
	"fmt"
	"os"
	"os/exec"
)

// alerts checks that the scheduled runs' failures can be mailed: a mail program where
// alerts.sendmail says, or alerts switched off on purpose. It proves an MTA is installed,
// not that its mail is delivered.
func (h *host) alerts() []Check {
	const title = "failures of scheduled runs are mailed (an MTA is installed)"
	a := h.env.Config.Alerts
	to := a.Recipient()
	if to == "" {
		return []Check{{ID: "alerts.mta", Title: title, Status: Warn, Safeguard: hipaaIncident,
			Finding: "alerts.mail_to is off: a failed backup, offsite copy or restore test tells no one",
			Fix:     "set alerts.mail_to (root, or an address) in the config file"}}
	}
	prog := a.Program()
	fi, err := os.Stat(prog)
	if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return []Check{check("alerts.mta", title, hipaaIncident, true, fmt.Sprintf("%s mails %s", prog, to), "", "")}
	}
	if err == nil {
		err = exec.ErrNotFound
	}
	return []Check{{ID: "alerts.mta", Title: title, Status: Warn, Safeguard: hipaaIncident,
		Finding: fmt.Sprintf("%s is not there (%v): a failed backup, offsite copy or restore test is mailed to no one", prog, err),
		Fix:     "apt install dma (delivers to /var/mail/root) or exim4-daemon-light, or set alerts.sendmail"}}
}
