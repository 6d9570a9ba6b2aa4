// Package doctor is `emrkit doctor`: the server's security posture against the OSCAR and
// OpenEMR guides, as a table or JSON; exit 3 when a control fails.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/doctor"
)

// Options are `emrkit doctor`'s inputs.
type Options struct {
	F       *cmdutil.Factory
	JSON    bool
	Profile string // "" = the configuration's
}

func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the server's security posture (2FA, encryption, firewall, MariaDB, OpenEMR, backups)",
		Long: "Doctor checks every control of the OSCAR and OpenEMR guides and prints PASS, WARN, FAIL or SKIP\n" +
			"with a one-line finding, the command that fixes it and the HIPAA Security Rule safeguard it\n" +
			"serves. It changes nothing. As a non-root user it checks what it can read and says what it\n" +
			"skipped. Exit 0 when nothing fails (warnings included), 3 when a control fails.\n" +
			"--json follows /usr/share/doc/emrkit/doctor.schema.json.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.Config()
			if errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
				// The file is root's (0600): check what can be checked with the defaults.
				fmt.Fprintf(f.Err, "emrkit doctor: %s is root's; checking with the default configuration (run as root for the real one)\n", f.ConfigPath)
				cfg, err = config.Default(), nil
			}
			if err != nil {
				return err
			}
			return Run(cmd.Context(), o, cfg)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the report as JSON (for monitoring)")
	cmd.Flags().StringVar(&o.Profile, "profile", "", "check as `oscar` or `openemr` (default: the configured profile)")
	return cmd
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
	r := doctor.Run(ctx, doctor.Env{Config: cfg, Host: o.F.Host, Version: o.F.Version, OpenEMRURL: cfg.OpenEMR.BaseURL()}, profile)
	var err error
	if o.JSON {
		err = r.JSON(o.F.Out)
	} else {
		err = r.Table(o.F.Out, o.F.Colour != nil && o.F.Colour())
	}
	if err != nil {
		return err
	}
	if r.Failing() {
		return cmdutil.Problem()
	}
	return nil
}
