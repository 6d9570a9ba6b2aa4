// Package doctor is `emrkit doctor`: the server's security posture against the OSCAR and
// OpenEMR guides, as a table or JSON; exit 3 when a control fails.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/alert"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/doctor"
)

// Options are `emrkit doctor`'s inputs.
type Options struct {
	F       *cmdutil.Factory
	JSON    bool
	Verbose bool
	Profile string // "" = the configuration's
	// Alert mails (alerts.mail_to) the checks that passed at the last --alert run and fail
	// now, and keeps this report for the next: the scheduled run's mode.
	Alert bool
}

func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the server's security posture (2FA, encryption, firewall, MariaDB, OpenEMR, backups)",
		Long: "Doctor checks every control of the OSCAR and OpenEMR guides and prints PASS, WARN, FAIL or SKIP\n" +
			"with a one-line finding, the command that fixes it and the HIPAA Security Rule safeguard it\n" +
			"serves. It changes nothing. As a non-root user it checks what it can read and says what it\n" +
			"skipped; a configuration it cannot read (root's, mode 0600) is an error (exit 1), since\n" +
			"checking with other settings would report on the wrong paths: run it as root.\n" +
			"Exit 0 when nothing fails (warnings included), 3 when a control fails.\n" +
			"--json follows /usr/share/doc/emrkit/doctor.schema.json.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.Config()
			if errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
				fmt.Fprintln(f.Err, unreadable(f))
				return &cmdutil.ExitErr{Code: cmdutil.ExitError}
			}
			if err != nil {
				return err
			}
			return Run(cmd.Context(), o, cfg)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the report as JSON (for monitoring)")
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "name what findings only count (OpenEMR's users without MFA)")
	cmd.Flags().StringVar(&o.Profile, "profile", "", "check as `oscar` or `openemr` (default: the configured profile)")
	cmd.Flags().BoolVar(&o.Alert, "alert", false, "mail alerts.mail_to the checks that passed at the last --alert run and fail now (cron's daily run)")
	return cmd
}

// unreadable says that the configuration cannot be read, whose it is, and to run as root.
// Checking with the defaults instead would report on paths the host may not use.
func unreadable(f *cmdutil.Factory) string {
	why := "permission denied"
	if fi, err := os.Stat(f.ConfigPath); err == nil {
		owner := strconv.FormatUint(uint64(fi.Sys().(*syscall.Stat_t).Uid), 10)
		if u, err := user.LookupId(owner); err == nil {
			owner = u.Username
		}
		why += fmt.Sprintf("; it is %s's, mode %04o", owner, fi.Mode().Perm())
	}
	again := "sudo emrkit doctor"
	if f.ConfigSet {
		again += " --config " + f.ConfigPath
	}
	return fmt.Sprintf("emrkit doctor: cannot read %s (%s): run it as root (%s)", f.ConfigPath, why, again)
}

// Run checks and prints; cmdutil.Problem when a control failed.
func Run(ctx context.Context, o *Options, cfg config.Config) error {
	profile := o.Profile
	if profile == "" {
		profile = cfg.Profile
	}
	if profile != "oscar" && profile != "openemr" {
		return cmdutil.Usage(fmt.Errorf("--profile %q: give oscar or openemr", profile))
	}
	r := doctor.Run(ctx, doctor.Env{Config: cfg, Host: o.F.Host, Version: o.F.Version, OpenEMRURL: cfg.OpenEMR.BaseURL(), Verbose: o.Verbose}, profile)
	var err error
	if o.JSON {
		err = r.JSON(o.F.Out)
	} else {
		err = r.Table(o.F.Out, o.F.Colour != nil && o.F.Colour())
	}
	if err != nil {
		return err
	}
	if o.Alert {
		if err := alertRegressions(ctx, o, cfg, r); err != nil {
			return err
		}
	}
	if r.Failing() {
		return cmdutil.Problem()
	}
	return nil
}

// alertRegressions mails the checks that passed at the last --alert run and fail in r, then
// keeps r for the next run. A check failing run after run is mailed once, when it broke.
func alertRegressions(ctx context.Context, o *Options, cfg config.Config, r doctor.Report) error {
	last, ok, err := alert.LoadLastDoctor(cfg.Paths.StateDir)
	if err != nil {
		fmt.Fprintf(o.F.Err, "emrkit doctor: %v\n", err)
	}
	if regressed := alert.Regressions(last, r); ok && len(regressed) > 0 {
		m := alert.NewMailer(cfg)
		sent, err := m.Send(ctx, alert.RegressionReport(regressed))
		if err != nil {
			// Not kept: the next run compares with the last report mailed about, and tries again.
			return fmt.Errorf("doctor: %w; the checks that broke are in the table above", err)
		}
		if sent && !o.JSON { // stdout: cron mails a job's stderr, and one alert is enough
			fmt.Fprintf(o.F.Out, "mailed %s: %d check(s) passed last time and fail now\n", m.To, len(regressed))
		}
	}
	if err := alert.SaveLastDoctor(cfg.Paths.StateDir, r); err != nil {
		return fmt.Errorf("doctor: keep the report for the next --alert run: %w", err)
	}
	return nil
}
