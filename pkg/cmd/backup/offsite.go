package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/offsite"
	"github.com/emrkit/emrkit/pkg/redact"
)

// errOffsiteCopy marks a backup that was written but not copied offsite.
var errOffsiteCopy = errors.New("offsite copy failed")

// offsiteRepo is backup.offsite's repository, or an error naming the setting.
func offsiteRepo(f *cmdutil.Factory, cfg config.Config) (offsite.Repo, error) {
	if !cfg.Backup.Offsite.Enabled() {
		return offsite.Repo{}, cmdutil.Usage(fmt.Errorf("backup.offsite.repository is not set in %s; set it to the restic repository (sftp:USER@HOST:/PATH) first (README: Offsite copies)", f.ConfigPath))
	}
	r := cfg.Backup.Offsite.Repo()
	r.Log = f.Err
	return r, nil
}

// copyOffsite copies the backup at path offsite and applies the retention.
func copyOffsite(ctx context.Context, f *cmdutil.Factory, cfg config.Config, path string) error {
	r, err := offsiteRepo(f, cfg)
	if err != nil {
		return err
	}
	s, err := r.Copy(ctx, path)
	if err != nil {
		return fmt.Errorf("%w: %s stays on this server only: %w", errOffsiteCopy, filepath.Base(path), err)
	}
	fmt.Fprintf(f.Err, "copied %s offsite: snapshot %s in %s\n", filepath.Base(path), s.ShortID, r.Repository)
	if err := r.Forget(ctx, cfg.Backup.Offsite.Retention()); err != nil {
		return fmt.Errorf("%w: %s was copied (snapshot %s) but the retention was not applied: %w", errOffsiteCopy, filepath.Base(path), s.ShortID, err)
	}
	return nil
}

func newOffsite(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "offsite",
		Short: "The copies of the backups kept off the server (restic, backup.offsite)",
		Long: "With backup.offsite.repository set, every `emrkit backup` copies the new backup into that restic\n" +
			"repository (usually over SFTP) and applies backup.offsite.keep; the password is read from\n" +
			"backup.offsite.password_file only. `emrkit restore --from offsite [SNAPSHOT]` brings one back.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newOffsiteInit(f), newOffsiteList(f), newOffsiteCopy(f), newOffsiteCheck(f))
	return cmd
}

func newOffsiteInit(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the offsite repository (and its password file when missing)",
		Long: "Init generates backup.offsite.password_file (0600) when it is not there and creates the restic\n" +
			"repository. Keep a copy of that file off the server: without it the copies cannot be read.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			r, err := offsiteRepo(f, cfg)
			if err != nil {
				return err
			}
			created, err := r.Init(cmd.Context())
			if err != nil {
				return err
			}
			if !created {
				fmt.Fprintf(f.Out, "the restic repository %s is there already and opens with %s\n", r.Repository, r.PasswordFile)
				return nil
			}
			fmt.Fprintf(f.Out, "created the restic repository %s; its password is in %s: keep a copy of that file off this server\n", r.Repository, r.PasswordFile)
			return nil
		}),
	}
}

func newOffsiteList(f *cmdutil.Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the offsite copies, oldest first",
		Args:  cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			r, err := offsiteRepo(f, cfg)
			if err != nil {
				return err
			}
			all, err := r.Snapshots(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(f.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			if len(all) == 0 {
				fmt.Fprintf(f.Out, "no offsite copies in %s yet (emrkit backup takes one)\n", r.Repository)
				return nil
			}
			tw := tabwriter.NewWriter(f.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SNAPSHOT\tTIME (UTC)\tHOST\tBACKUP")
			for _, s := range all {
				file, err := s.File()
				if err != nil {
					file = "(" + err.Error() + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ShortID, s.Time.UTC().Format(time.DateTime), s.Hostname, filepath.Base(file))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the snapshots as JSON")
	return cmd
}

func newOffsiteCopy(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "copy [FILE]",
		Short: "Copy a backup (default: the newest) offsite now, e.g. after the network came back",
		Args:  cobra.MaximumNArgs(1),
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			} else {
				newest, err := newestBackup(f, cfg)
				if err != nil {
					return err
				}
				path = newest
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("backup offsite copy: %w", err)
			}
			if err := copyOffsite(cmd.Context(), f, cfg, path); err != nil {
				return err
			}
			fmt.Fprintln(f.Out, path)
			return nil
		}),
	}
}

// OffsiteCheckOptions are `emrkit backup offsite check`'s inputs.
type OffsiteCheckOptions struct {
	F     *cmdutil.Factory
	Alert bool
}

func newOffsiteCheck(f *cmdutil.Factory) *cobra.Command {
	o := &OffsiteCheckOptions{F: f}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the offsite repository, reading part of the copies back",
		Long: "Check runs restic check with --read-data-subset backup.offsite.read_data (default " + config.DefaultOffsiteReadData + "), so a\n" +
			"copy that was written but cannot be read back is found, and records the result for doctor.\n" +
			"A damaged repository exits 3.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			err := RunOffsiteCheck(cmd.Context(), o, cfg)
			if err != nil && o.Alert {
				return mailFailure(cmd.Context(), f, cfg, "the offsite repository check failed", "emrkit backup offsite check; emrkit doctor", err)
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&o.Alert, "alert", false, "mail a failed check to alerts.mail_to instead of only printing it (cron's runs)")
	return cmd
}

// RunOffsiteCheck checks the repository and records the outcome.
func RunOffsiteCheck(ctx context.Context, o *OffsiteCheckOptions, cfg config.Config) error {
	r, err := offsiteRepo(o.F, cfg)
	if err != nil {
		return err
	}
	subset := cfg.Backup.Offsite.CheckSubset()
	res := offsite.CheckResult{Time: time.Now().UTC(), Subset: subset}
	cerr := r.Verify(ctx, subset)
	res.OK = cerr == nil
	if cerr != nil {
		res.Problem = redact.Error(cerr)
	}
	if err := offsite.SaveCheck(cfg.Paths.StateDir, res); err != nil {
		return fmt.Errorf("backup offsite check: record the result: %w", err)
	}
	if cerr != nil {
		return &cmdutil.ExitErr{Code: cmdutil.ExitProblem, Err: fmt.Errorf("backup offsite check of %s FAILED: %w", r.Repository, cerr)}
	}
	read := subset + " of the data read back"
	if subset == "" {
		read = "structure only"
	}
	fmt.Fprintf(o.F.Out, "PASS the offsite repository %s is sound (%s)\n", r.Repository, read)
	return nil
}
