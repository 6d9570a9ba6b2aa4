package doctor

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/emrkit/emrkit/pkg/offsite"
)

// offsiteTimeout bounds the probe of the offsite repository: an unreachable host must not
// hold up the daily doctor run.
const offsiteTimeout = 2 * time.Minute

// offsite checks that backups leave the server: the newest snapshot in the repository (asked
// of restic, not of a record) and the last repository check.
func (h *host) offsite() []Check {
	const copyTitle, checkTitle = "a recent backup is kept off the server", "the offsite copies were proven readable"
	o := h.env.Config.Backup.Offsite
	if !o.Enabled() {
		return []Check{{ID: "offsite.recent", Title: copyTitle, Status: Warn, Safeguard: hipaaStorage,
			Finding: "backups stay on this server: a fire, a theft or ransomware takes them with it",
			Fix:     "set backup.offsite.repository (README: Offsite copies), then emrkit backup offsite init"}}
	}
	maxAge := 26 * time.Hour
	if h.env.Config.Backup.Schedule == "weekly" {
		maxAge = 8 * 24 * time.Hour
	}
	var out []Check
	ctx, cancel := context.WithTimeout(h.ctx, offsiteTimeout)
	defer cancel()
	r := o.Repo()
	all, err := r.Snapshots(ctx)
	switch {
	case err != nil:
		out = append(out, check("offsite.recent", copyTitle, hipaaStorage, false, "",
			"the offsite repository cannot be read: "+err.Error(), "emrkit backup offsite list, and fix what it says"))
	case len(all) == 0:
		out = append(out, check("offsite.recent", copyTitle, hipaaStorage, false, "",
			"the offsite repository "+r.Repository+" holds no copy yet", "emrkit backup offsite copy"))
	default:
		s := all[len(all)-1]
		file, _ := s.File()
		age := h.env.Now().Sub(s.Time)
		out = append(out, check("offsite.recent", copyTitle, hipaaStorage, age <= maxAge,
			fmt.Sprintf("snapshot %s (%s), %s old, %d copies kept", s.ShortID, filepath.Base(file), age.Round(time.Minute), len(all)),
			fmt.Sprintf("the newest offsite copy is %s old (snapshot %s); the schedule allows %s", age.Round(time.Hour), s.ShortID, maxAge),
			"emrkit backup offsite copy; check cron's mail and /etc/cron.d/emrkit-backup"))
	}
	last, found, err := offsite.LastCheck(h.env.Config.Paths.StateDir)
	switch {
	case err != nil:
		out = append(out, skipped("offsite.check", checkTitle, hipaaBackup, err))
	case !found:
		out = append(out, check("offsite.check", checkTitle, hipaaBackup, false, "", "the offsite repository has never been checked", "emrkit backup offsite check"))
	case !last.OK:
		out = append(out, check("offsite.check", checkTitle, hipaaBackup, false, "",
			fmt.Sprintf("the offsite check on %s FAILED: %s", last.Time.Format(time.DateOnly), last.Problem), "emrkit backup offsite check"))
	case h.env.Now().Sub(last.Time) > 8*24*time.Hour:
		out = append(out, Check{ID: "offsite.check", Title: checkTitle, Status: Warn, Safeguard: hipaaBackup,
			Finding: fmt.Sprintf("the last offsite check passed on %s, more than a week ago", last.Time.Format(time.DateOnly)), Fix: "emrkit backup offsite check"})
	default:
		read := last.Subset + " of the data read back"
		if last.Subset == "" {
			read = "structure only"
		}
		out = append(out, check("offsite.check", checkTitle, hipaaBackup, true, fmt.Sprintf("checked on %s, %s", last.Time.Format(time.DateOnly), read), "", ""))
	}
	return out
}
