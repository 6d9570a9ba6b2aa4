// Package cron owns emrkit's /etc/cron.d entries: the once-a-minute job that keeps OSCAR's PINs
// equal to each user's current TOTP code, and the backup schedule with its weekly restore test.
package cron

import (
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/managedfile"
)

// runPartsName is what cron accepts in /etc/cron.d (run-parts' LSB-less rule): no dots, so
// "emrkit.dpkg-old" style leftovers are ignored.
var runPartsName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// CheckPath rejects a cron file cron would silently ignore.
func CheckPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("paths.cron_file: %q must be an absolute path", path)
	}
	if !runPartsName.MatchString(filepath.Base(path)) {
		return fmt.Errorf("paths.cron_file: cron ignores %q (use only letters, digits, '_' and '-')", filepath.Base(path))
	}
	return nil
}

// PINJob is the entry's content. The job does nothing once the package is removed (the
// binary is gone) and runs sync-pins for a minute so every 30-second code is written on time.
func PINJob(configPath string) []byte {
	flag := ""
	if configPath != config.DefaultPath {
		flag = " --config " + configPath
	}
	return fmt.Appendf(nil, `# Installed by emrkit: writes each OSCAR user's current TOTP code into security.pin.
# Undone by 'emrkit revert --all' or 'dpkg --purge emrkit'; edits here are kept on purge.
SHELL=/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
* * * * * root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s 2fa sync-pins --for 60s
`, flag)
}

// BackupFile is the backup schedule's entry, beside the PIN job's.
const BackupFile = "emrkit-backup"

// BackupJob is the backup schedule's entry: a backup at at (a cron time), encrypted to the
// export key when there is one, every Sunday a restore test of the newest backup, and every
// morning a doctor run. Each mails what went wrong to alerts.mail_to (--alert: a failed backup
// or test, a check that passed the day before and fails now); their stdout, the report of a
// run that went right or was mailed, goes nowhere. Like the PIN job it does nothing once the
// package is removed.
func BackupJob(configPath, at string, j Jobs) []byte {
	flag := ""
	if configPath != config.DefaultPath {
		flag = " --config " + configPath
	}
	enc := ""
	if j.Encrypt {
		enc = " --encrypt"
	}
	if !j.Alerts { // the entry of 0.5.0 to 0.8.1
		return fmt.Appendf(nil, `# Installed by emrkit: scheduled backups (backup.schedule) and a weekly restore test.
# Undone by 'emrkit revert --all' or 'dpkg --purge emrkit'; edits here are kept on purge.
SHELL=/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
%s root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s backup%s
47 3 * * 0 root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s backup verify
`, at, flag, enc, flag)
	}
	entry := fmt.Appendf(nil, `# Installed by emrkit: scheduled backups (backup.schedule), a weekly restore test and a
# daily doctor run, each mailing alerts.mail_to (root) what went wrong.
# Undone by 'emrkit revert --all' or 'dpkg --purge emrkit'; edits here are kept on purge.
SHELL=/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
%s root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s backup%s --alert >/dev/null
47 3 * * 0 root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s backup verify --alert >/dev/null
37 6 * * * root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s doctor --alert >/dev/null
`, at, flag, enc, flag, flag)
	if j.Offsite {
		// Each backup above copies itself offsite; Saturday's check reads part of the copies back.
		entry = fmt.Appendf(entry, "27 4 * * 6 root [ -x /usr/bin/emrkit ] || exit 0; /usr/bin/emrkit%s backup offsite check --alert >/dev/null\n", flag)
	}
	return entry
}

// AlertsSince is the release whose scheduled runs mail their failures (--alert, pkg/alert).
const AlertsSince = "0.8.2"

// Jobs says what the backup schedule's entry runs: encrypted backups, (since AlertsSince)
// runs that mail their failures, and (with alerts) the offsite repository's weekly check.
type Jobs struct {
	Encrypt, Alerts, Offsite bool
}

// BackupStep installs the schedule in dir (nil when backup.schedule is off).
func BackupStep(dir, configPath string, b config.Backup, j Jobs, since string) ([]managedfile.Step, error) {
	at := b.CronTime()
	if at == "" {
		return nil, nil
	}
	path := filepath.Join(dir, BackupFile)
	if err := checkConfigPath(configPath); err != nil {
		return nil, err
	}
	j.Offsite = j.Alerts && b.Offsite.Enabled()
	return []managedfile.Step{{Path: path, Content: BackupJob(configPath, at, j), Mode: 0o644,
		What: "cron job taking scheduled backups, restore tests and doctor runs", SinceVersion: since}}, nil
}

func checkConfigPath(configPath string) error {
	if !filepath.IsAbs(configPath) {
		return fmt.Errorf("config file %q is a relative path, which the cron job cannot find; give --config an absolute path", configPath)
	}
	if !plainPath.MatchString(configPath) {
		return fmt.Errorf("config file %q cannot go on a cron line; use a path of letters, digits, '.', '_', '-' and '/'", configPath)
	}
	return nil
}

var plainPath = regexp.MustCompile(`^/[A-Za-z0-9_./-]+$`)

// PINStep installs the entry at path.
func PINStep(path, configPath, since string) (managedfile.Step, error) {
	if err := CheckPath(path); err != nil {
		return managedfile.Step{}, err
	}
	if err := checkConfigPath(configPath); err != nil {
		return managedfile.Step{}, err
	}
	return managedfile.Step{Path: path, Content: PINJob(configPath), Mode: 0o644,
		What: "cron job cycling OSCAR PINs", SinceVersion: since}, nil
}
