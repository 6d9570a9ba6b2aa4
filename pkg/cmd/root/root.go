// Package root builds emrkit's command tree. Both the server binary and the .deb builder
// (for the man page) use it.
package root

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmd/apply"
	cmdbackup "github.com/emrkit/emrkit/pkg/cmd/backup"
	cmddoctor "github.com/emrkit/emrkit/pkg/cmd/doctor"
	"github.com/emrkit/emrkit/pkg/cmd/firewall"
	"github.com/emrkit/emrkit/pkg/cmd/maint"
	cmdmigrate "github.com/emrkit/emrkit/pkg/cmd/migrate"
	cmdpgp "github.com/emrkit/emrkit/pkg/cmd/pgp"
	cmdportal "github.com/emrkit/emrkit/pkg/cmd/portal"
	"github.com/emrkit/emrkit/pkg/cmd/revert"
	"github.com/emrkit/emrkit/pkg/cmd/status"
	"github.com/emrkit/emrkit/pkg/cmd/twofa"
	"github.com/emrkit/emrkit/pkg/cmd/version"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
)

// New returns the root command. Flags fill f before any subcommand runs.
func New(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "emrkit",
		Short: "Security finishing touches for clinic EMR servers, journaled and reversible",
		Long: "emrkit applies the security finishing touches of an OSCAR or OpenEMR server (two-factor\n" +
			"login, encrypted exports, firewall, data migrations, an offsite portal's access) as journaled\n" +
			"steps that downgrade and purge undo exactly. Exit codes: 0 ok, 1 error, 2 usage error, 3 a\n" +
			"check found a problem.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			f.ConfigSet = cmd.Flags().Changed("config")
			f.Host.ConfigPath = f.ConfigPath
		},
	}
	cmd.PersistentFlags().StringVar(&f.ConfigPath, "config", config.DefaultPath, "configuration `FILE`")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cmdutil.Usage(err) })
	cmd.AddCommand(version.New(f), apply.New(f), status.New(f), revert.New(f), twofa.New(f), firewall.NewWith(f, f.Host.Firewall),
		cmdpgp.NewWith(f, f.Host.PGP), cmdpgp.NewOSCAREncrypt(f), cmdmigrate.New(f), cmdbackup.New(f), cmdbackup.NewRestore(f),
		cmddoctor.New(f), cmdportal.New(f), maint.New(f))
	requireSubcommand(cmd)
	argsAreUsage(cmd)
	return cmd
}

// argsAreUsage makes a wrong number of arguments, for every command, a usage error (exit 2),
// as cmd.SetFlagErrorFunc does for a wrong flag.
func argsAreUsage(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return cmdutil.Usage(err)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}

// requireSubcommand makes a group command (2fa, firewall, pgp, migrate) without a known subcommand a
// usage error (exit 2) instead of help with exit 0, which a script would take for success.
func requireSubcommand(root *cobra.Command) {
	for _, c := range root.Commands() {
		if !c.HasSubCommands() || c.RunE != nil || c.Run != nil {
			continue
		}
		c.Args = cobra.NoArgs
		c.RunE = func(c *cobra.Command, _ []string) error {
			var names []string
			for _, sub := range c.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return cmdutil.Usage(fmt.Errorf("%s needs a subcommand: %s", c.CommandPath(), strings.Join(names, ", ")))
		}
	}
}
