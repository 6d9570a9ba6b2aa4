// Package twofa is `emrkit 2fa`: enrol, disable, list and verify OSCAR users' TOTP two-factor
// login, and the PIN cycle cron runs every minute.
package twofa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/syslog"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/totp"
	"github.com/emrkit/emrkit/pkg/twofa"
)

func New(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "2fa",
		Short: "OSCAR two-factor login: enrol users, verify codes, cycle PINs",
	}
	cmd.AddCommand(newEnroll(f), newDisable(f), newList(f), newVerify(f), newSyncPins(f), newAdopt(f))
	return cmd
}

// open connects to the EMR database; unlike apply, a command run by hand does not defer.
func open(ctx context.Context, cfg config.Config) (*twofa.DB, error) {
	db := twofa.NewDB(cfg.Database)
	if _, err := db.Get(ctx); err != nil {
		var d *step.DeferredError
		if errors.As(err, &d) {
			return nil, errors.New(d.Reason)
		}
		return nil, err
	}
	return db, nil
}

func checkUser(user string) error {
	if !config.ValidUserName(user) {
		return fmt.Errorf("user name %q: OSCAR user names are letters, digits, . _ @ - (at most 30)", user)
	}
	return nil
}

type EnrollOptions struct {
	F          *cmdutil.Factory
	User       string
	Force, Yes bool
	NoQR       bool
}

func newEnroll(f *cmdutil.Factory) *cobra.Command {
	o := &EnrollOptions{F: f}
	cmd := &cobra.Command{
		Use:   "enroll USER",
		Short: "Give USER a new TOTP secret and turn their two-factor login on",
		Long: "Enroll stores a new 20-byte secret for USER, sets totp_enabled=1, and prints the otpauth://\n" +
			"URI and a QR code to scan with FreeOTP or Google Authenticator. A user who already has a\n" +
			"secret keeps it unless --force (asks for confirmation, or --yes).",
		Args: cobra.ExactArgs(1),
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			o.User = args[0]
			return RunEnroll(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "replace an existing secret (the user's app must be set up again)")
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&o.NoQR, "no-qr", false, "print the URI only")
	return cmd
}

func RunEnroll(ctx context.Context, o *EnrollOptions, cfg config.Config) error {
	if err := checkUser(o.User); err != nil {
		return err
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	uris := &twofa.URIFile{Path: uriPath(cfg)}
	s := twofa.UserStep{DB: db, User: o.User, URIs: uris, Issuer: cfg.TOTP.Issuer, Force: o.Force, SinceVersion: o.F.Version}
	if err := s.Preflight(ctx); err != nil {
		return err
	}
	if enrolled, err := s.Check(ctx); err != nil {
		return err
	} else if enrolled {
		return fmt.Errorf("%s already has a TOTP secret; `emrkit 2fa enroll %s --force` issues a new one", o.User, o.User)
	}
	if o.Force {
		if err := o.F.Confirm(fmt.Sprintf("replace %s's TOTP secret (their authenticator app stops working)", o.User), o.Yes); err != nil {
			return err
		}
	}
	j, err := journal.Open(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	defer j.Close()
	r := &step.Runner{Journal: j, Undoers: step.Registry{twofa.UserKind: twofa.UserUndoer{DB: db, URIs: uris}},
		Out: o.F.Err, Origin: journal.OriginCommand}
	if _, err := r.Run(ctx, []step.Step{s}); err != nil {
		return fmt.Errorf("enrol %s: %w", o.User, err)
	}
	// The journal keeps only the secret's digest once the enrolment is done; the URI file is
	// where the enrolment left the secret to hand over.
	uri, ok, err := uris.Get(o.User)
	if err != nil {
		return fmt.Errorf("enrol %s: %w", o.User, err)
	}
	if !ok {
		return fmt.Errorf("enrol %s: %s holds no URI for them; `emrkit 2fa enroll %s --force` issues a new secret", o.User, uris.Path, o.User)
	}
	fmt.Fprintf(o.F.Out, "%s is enrolled. Scan this with FreeOTP or Google Authenticator, then type the code in OSCAR's PIN field:\n%s\n", o.User, uri)
	if !o.NoQR {
		return totp.WriteQR(o.F.Out, uri)
	}
	return nil
}

func uriPath(cfg config.Config) string {
	return cfg.Paths.StateDir + "/" + twofa.URIFileName
}

type UserOptions struct {
	F    *cmdutil.Factory
	User string
	Code string
}

func newDisable(f *cmdutil.Factory) *cobra.Command {
	o := &UserOptions{F: f}
	return &cobra.Command{
		Use:   "disable USER",
		Short: "Turn USER's two-factor login off (totp_enabled=0), keeping the secret",
		Long: "Disable is an admin's override (a lost phone). Users listed in totp.users are enabled again\n" +
			"by the next `emrkit apply`; take them out of totp.users (dpkg-reconfigure emrkit) to keep them off.",
		Args: cobra.ExactArgs(1),
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			o.User = args[0]
			return RunDisable(cmd.Context(), o, cfg)
		}),
	}
}

func RunDisable(ctx context.Context, o *UserOptions, cfg config.Config) error {
	if err := checkUser(o.User); err != nil {
		return err
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := twofa.Disable(ctx, db, o.User)
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintf(o.F.Out, "%s's two-factor login was already off\n", o.User)
		return nil
	}
	fmt.Fprintf(o.F.Out, "%s's two-factor login is off\n", o.User)
	if slices.Contains(cfg.TOTP.Users, o.User) {
		fmt.Fprintf(o.F.Err, "NOTE: %s is in totp.users, so `emrkit apply` turns it on again; remove them with `dpkg-reconfigure emrkit`\n", o.User)
	}
	return nil
}

type ListOptions struct {
	F    *cmdutil.Factory
	JSON bool
}

func newList(f *cmdutil.Factory) *cobra.Command {
	o := &ListOptions{F: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List users with two-factor login (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return RunList(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "machine-readable output")
	return cmd
}

func RunList(ctx context.Context, o *ListOptions, cfg config.Config) error {
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	entries, err := journal.Read(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	users, err := twofa.List(ctx, db, entries)
	if err != nil {
		return err
	}
	if o.JSON {
		if users == nil {
			users = []twofa.Enrolment{}
		}
		enc := json.NewEncoder(o.F.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(users)
	}
	tw := tabwriter.NewWriter(o.F.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tENABLED\tENROLLED BY EMRKIT")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.User, yesNo(u.Enabled), yesNo(u.ByEmrkit))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newVerify(f *cmdutil.Factory) *cobra.Command {
	o := &UserOptions{F: f}
	return &cobra.Command{
		Use:   "verify USER CODE",
		Short: "Check a TOTP code for USER (exit 0 accepted, 3 rejected); each code works once",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.User, o.Code = args[0], args[1]
			cfg, err := f.Config()
			if err != nil {
				return err
			}
			return RunVerify(cmd.Context(), o, cfg)
		},
	}
}

func RunVerify(ctx context.Context, o *UserOptions, cfg config.Config) error {
	if err := checkUser(o.User); err != nil {
		return err
	}
	// Not a code at all is a mistake in the command line, not a rejected code; the text typed
	// is not echoed (it may be a password pasted into the wrong field).
	if !totp.IsCode(o.Code) {
		return cmdutil.Usage(fmt.Errorf("CODE must be the %d digits %s's authenticator app shows now", totp.Digits, o.User))
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	v := &twofa.Verifier{DB: db, StateDir: cfg.Paths.StateDir, Now: time.Now}
	ok, err := v.Verify(ctx, o.User, o.Code)
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(o.F.Out, "rejected: not %s's current code, or already used\n", o.User)
		return cmdutil.Problem()
	}
	fmt.Fprintf(o.F.Out, "accepted\n")
	return nil
}

type SyncOptions struct {
	F      *cmdutil.Factory
	Window time.Duration
}

func newSyncPins(f *cmdutil.Factory) *cobra.Command {
	o := &SyncOptions{F: f}
	cmd := &cobra.Command{
		Use:   "sync-pins",
		Short: "Write the current TOTP code of each user emrkit enrolled into OSCAR's PIN (run by cron)",
		Long: "Sync-pins writes the current code into security.pin for every user emrkit enrolled (while their\n" +
			"secret is still the one emrkit wrote), again at each 30-second boundary for --for, and does\n" +
			"nothing while TOTP=0 in oscar.properties. Users whose 2FA was switched on elsewhere keep their PIN.\n" +
			"Failures go to syslog and stderr, never with a secret or a code.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return RunSyncPins(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().Var(&cmdutil.DurationRange{P: &o.Window, Min: 0, Max: time.Hour, What: "how long to keep updating"}, "for",
		"keep updating at each 30 s boundary for this long, at most 1h (cron: 60s)")
	return cmd
}

func RunSyncPins(ctx context.Context, o *SyncOptions, cfg config.Config) error {
	err := syncPins(ctx, o, cfg)
	if err != nil {
		// cron mails stderr to root; syslog keeps a record where mail is not read.
		if w, serr := syslog.New(syslog.LOG_WARNING|syslog.LOG_AUTHPRIV, "emrkit"); serr == nil {
			w.Warning("2fa sync-pins: " + err.Error())
			w.Close()
		}
	}
	return err
}

func syncPins(ctx context.Context, o *SyncOptions, cfg config.Config) error {
	props, found := plan.PropertiesPath(cfg, o.F.Host)
	if !found {
		return nil // OSCAR is not installed: no PINs to cycle
	}
	if err := os.MkdirAll(cfg.Paths.StateDir, 0o700); err != nil {
		return err
	}
	lock, err := fsutil.TryLock(cfg.Paths.StateDir + "/sync-pins.lock")
	if errors.Is(err, fsutil.ErrLocked) {
		return fmt.Errorf("another sync-pins is running (%w); this run is skipped", err)
	}
	if err != nil {
		return err
	}
	defer lock.Close()
	dbctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	db, err := mariadb.Open(dbctx, cfg.Database)
	cancel()
	if err != nil {
		return err
	}
	defer db.Close()
	entries, err := journal.Read(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	s := &twofa.Syncer{DB: db, Enrolled: twofa.Enrolled(entries, cfg.Database.Name), Properties: props, Now: time.Now}
	_, err = s.Run(ctx, o.Window)
	return err
}
