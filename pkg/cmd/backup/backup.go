// Package backup is `emrkit backup [--encrypt]` and `emrkit restore FILE`: whole-database
// backups of the EMR into paths.backup_dir (optionally OpenPGP-encrypted to the export key,
// with retention), and their restore into the EMR database or another one.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/alert"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/progress"
)

// Options are `emrkit backup`'s inputs.
type Options struct {
	F       *cmdutil.Factory
	Encrypt bool
	// Key is the public key to encrypt to; "" = the export key (pgp.public_key in public-key
	// mode, the generated one in generate mode).
	Key string
	// Keep is how many backups of this kind retention keeps (0: all).
	Keep   int
	DryRun bool
	// Alert mails a failure to alerts.mail_to (cron's scheduled runs).
	Alert bool
}

// New returns the `backup` command.
func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up the EMR database into the backup directory",
		Long: "Backup runs mariadb-dump --single-transaction (with routines, triggers and events) on the EMR\n" +
			"database and writes it gzip-compressed, mode 0600, to paths.backup_dir as\n" +
			"DATABASE-backup-TIME.sql.gz. With --encrypt the file is an OpenPGP message to the export key\n" +
			"(.sql.gz.pgp; `gpg -d` or `emrkit pgp decrypt` open it), so a stolen backup disk reveals\n" +
			"nothing. Afterwards only the newest --keep backups are kept; the backups emrkit takes before\n" +
			"undoing a change are counted apart and never pruned by this. With backup.offsite set the new\n" +
			"backup is then copied offsite (see `emrkit backup offsite`). `emrkit restore FILE` restores.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			if !cmd.Flags().Changed("keep") {
				o.Keep = cfg.Backup.KeepBackups()
			}
			path, err := RunBackup(cmd.Context(), o, cfg)
			if path != "" {
				fmt.Fprintln(f.Out, path)
			}
			if err != nil && o.Alert {
				if errors.Is(err, errOffsiteCopy) {
					return mailFailure(cmd.Context(), f, cfg, "the offsite copy of the scheduled backup failed", "emrkit backup offsite copy; emrkit doctor", err)
				}
				return mailFailure(cmd.Context(), f, cfg, "the scheduled backup failed", "run emrkit backup to see it again, then emrkit doctor", err)
			}
			return err
		}),
	}
	cmd.AddCommand(newVerify(f), newOffsite(f))
	cmd.Flags().BoolVar(&o.Encrypt, "encrypt", false, "encrypt to the export key (OpenPGP)")
	cmd.Flags().StringVar(&o.Key, "key", "", "encrypt to this armored public key `FILE` instead of the export key")
	o.Keep = config.DefaultKeep
	cmd.Flags().Var(&cmdutil.IntRange{P: &o.Keep, Min: 0, Max: MaxKeep, What: "backups kept (0 keeps all)"}, "keep",
		fmt.Sprintf("keep the newest `N` backups, delete older ones, 0..%d (0 keeps all; default: backup.keep)", MaxKeep))
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "check the database and the key; write nothing")
	cmd.Flags().BoolVar(&o.Alert, "alert", false, "mail a failure to alerts.mail_to instead of only printing it (cron's runs)")
	return cmd
}

// mailFailure mails err, a scheduled run's failure, to alerts.mail_to and returns what to
// exit with. Once the mail is sent the failure goes to stdout, not stderr: cron mails a job's
// stderr, and one alert is enough. When the mail cannot be sent, both errors go to stderr,
// for cron's mail or its log.
func mailFailure(ctx context.Context, f *cmdutil.Factory, cfg config.Config, subject, fix string, err error) error {
	m := alert.NewMailer(cfg)
	sent, merr := m.Send(ctx, alert.Report{Subject: subject, Lines: []string{err.Error(), "fix: " + fix}})
	switch {
	case merr != nil:
		return &cmdutil.ExitErr{Code: cmdutil.ExitCode(err), Err: fmt.Errorf("%w; %w", err, merr)}
	case !sent:
		return err
	}
	fmt.Fprintf(f.Out, "%s\nmailed %s: %s\n", err, m.To, subject)
	return &cmdutil.ExitErr{Code: cmdutil.ExitCode(err)}
}

// MaxKeep bounds --keep: beyond it "keep N" is "keep all" said in a way a typo makes.
const MaxKeep = 100000

// RunBackup takes the backup and returns its path ("" in a dry run).
func RunBackup(ctx context.Context, o *Options, cfg config.Config) (string, error) {
	if o.Key != "" && !o.Encrypt {
		return "", cmdutil.Usage(errors.New("--key is the key to encrypt to: add --encrypt"))
	}
	var recipients openpgp.EntityList
	if o.Encrypt {
		path, err := exportKey(o, cfg)
		if err != nil {
			return "", err
		}
		if recipients, err = backup.ReadPublicKey(path); err != nil {
			return "", err
		}
	}
	dbc, err := plan.EMRDatabase(cfg, o.F.Host)
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if o.DryRun {
		db, err := mariadb.Open(ctx, dbc)
		if err != nil {
			return "", err
		}
		db.Close()
		what := "backup"
		if o.Encrypt {
			what = "encrypted backup"
		}
		then := ""
		if cfg.Backup.Offsite.Enabled() {
			then = " and copy it offsite to " + cfg.Backup.Offsite.Repository
		}
		fmt.Fprintf(o.F.Out, "would write an %s of %s to %s%s (dry run: nothing written)\n", what, dbc.Name, cfg.Paths.BackupDir, then)
		return "", nil
	}
	path, err := backup.Write(ctx, backup.Options{Database: dbc, Dir: cfg.Paths.BackupDir, Label: backup.ManualLabel,
		Recipients: recipients, Keep: o.Keep, Log: o.F.Err})
	if err != nil || !cfg.Backup.Offsite.Enabled() {
		return path, err
	}
	return path, copyOffsite(ctx, o.F, cfg, path)
}

// exportKey is --key, else the export public key pgp.mode provides.
func exportKey(o *Options, cfg config.Config) (string, error) {
	if o.Key != "" {
		return o.Key, nil
	}
	switch cfg.PGP.Mode {
	case "public-key":
		return cfg.PGP.PublicKey, nil
	case "generate":
		path := pgp.Paths(cfg).PublicKey
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("--encrypt: the export key is not generated yet (%s is missing); run `emrkit apply` first, or give --key FILE", path)
		}
		return path, nil
	}
	return "", fmt.Errorf("--encrypt needs a public key and pgp.mode is %s (no export key); give --key FILE", cfg.PGP.Mode)
}

// RestoreOptions are `emrkit restore`'s inputs.
type RestoreOptions struct {
	F    *cmdutil.Factory
	File string
	// Database to restore into; "" = database.name.
	Database string
	// Key and PassphraseFile open an encrypted backup; "" = the generated export key emrkit
	// keeps (generate mode), while it is still on the server.
	Key, PassphraseFile string
	Yes, DryRun         bool
	// From is where FILE is: "" this server, "offsite" a snapshot of backup.offsite (Snapshot,
	// "" for the newest), fetched into the backup directory first.
	From, Snapshot string
}

// NewRestore returns the `restore` command.
func NewRestore(f *cmdutil.Factory) *cobra.Command {
	o := &RestoreOptions{F: f}
	cmd := &cobra.Command{
		Use:   "restore FILE | --from offsite [SNAPSHOT]",
		Short: "Restore a backup into the EMR database, or into --database NAME",
		Long: "Restore first reads the whole backup (decrypting it, checking its integrity and that the dump\n" +
			"is complete), then asks for confirmation (--yes without a terminal), backs up the tables it is\n" +
			"about to replace, and loads the dump over several connections. Tables the backup holds are\n" +
			"replaced; other tables of the database are left alone. --database restores into another\n" +
			"database (created when missing), e.g. to look at last week's data beside today's.\n" +
			"--from offsite restores SNAPSHOT (default: the newest; `emrkit backup offsite list`) of\n" +
			"backup.offsite, fetched first into the backup directory and removed again afterwards.",
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case o.From != "" && o.From != "offsite":
				return cmdutil.Usage(fmt.Errorf("--from %q: the only other place backups are is offsite (--from offsite)", o.From))
			case len(args) > 1:
				return cmdutil.Usage(fmt.Errorf("restore takes one backup FILE or SNAPSHOT, not %d", len(args)))
			case o.From == "" && len(args) == 0:
				return cmdutil.Usage(errors.New("restore: give the backup FILE, or --from offsite [SNAPSHOT]"))
			}
			return nil
		},
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			if o.From == "offsite" {
				if len(args) == 1 {
					o.Snapshot = args[0]
				}
				return RunRestoreOffsite(cmd.Context(), o, cfg)
			}
			o.File = args[0]
			return RunRestore(cmd.Context(), o, cfg)
		}),
	}
	cmd.Flags().StringVar(&o.From, "from", "", "restore a copy from `offsite` (backup.offsite) instead of a FILE here")
	cmd.Flags().StringVar(&o.Database, "database", "", "restore into database `NAME` instead of database.name (created when missing)")
	cmd.Flags().StringVar(&o.Key, "key", "", "private key `FILE` of an encrypted backup")
	cmd.Flags().StringVar(&o.PassphraseFile, "passphrase-file", "", "the private key's passphrase, first line of `FILE`")
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "verify the backup and say what would be restored; change nothing")
	return cmd
}

// RunRestore verifies, confirms, backs up what it replaces, and restores.
func RunRestore(ctx context.Context, o *RestoreOptions, cfg config.Config) error {
	dbc, err := plan.EMRDatabase(cfg, o.F.Host)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	target := o.Database
	if target == "" {
		target = dbc.Name
	}
	if err := mariadb.ValidIdentifier(target); err != nil {
		return cmdutil.Usage(fmt.Errorf("--database: %w", err))
	}
	if _, err := os.Stat(o.File); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: there is no file %s; emrkit's backups are in %s (ls -t %s)", o.File, cfg.Paths.BackupDir, cfg.Paths.BackupDir)
	} else if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	keys, err := privateKeys(o.F, cfg, o.File, o.Key, o.PassphraseFile)
	if err != nil {
		return damaged(fmt.Errorf("restore: %w", err))
	}
	exists, tables, err := backup.Exists(ctx, dbc, target)
	if err != nil {
		return err
	}
	// Into a database that is there, the backup is checked whole before anything is replaced;
	// into a new one, Restore checks it as it loads and drops what it loaded should it fail.
	var checked *backup.Summary
	if exists || o.DryRun {
		limit, err := backup.StatementLimit(ctx, dbc)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		sum, err := backup.Verify(ctx, o.File, keys, limit)
		if err != nil {
			return damaged(fmt.Errorf("restore: %w; nothing was restored", err))
		}
		if err := backup.CheckSource(o.File, sum.Database, target, o.Database != ""); err != nil {
			return cmdutil.Usage(fmt.Errorf("restore: %w; nothing was restored", err))
		}
		fmt.Fprintf(o.F.Err, "%s is complete: %.1f MB of SQL of database %s\n", o.File, float64(sum.Size)/1e6, orUnnamed(sum.Database))
		checked = &sum
	}
	what := fmt.Sprintf("restore %s into the new database %s", o.File, target)
	if exists && tables > 0 {
		what = fmt.Sprintf("restore %s into database %s (%d tables), replacing the tables the backup holds", o.File, target, tables)
	}
	if o.DryRun {
		fmt.Fprintf(o.F.Out, "would %s (dry run: nothing changed)\n", what)
		return nil
	}
	if err := o.F.Confirm(what, o.Yes); err != nil {
		return err
	}
	if exists && tables > 0 {
		db := dbc
		db.Name = target
		path, err := backup.Dump(ctx, db, cfg.Paths.BackupDir, "before-restore")
		if err != nil {
			return fmt.Errorf("backup of %s before restoring over it: %w; nothing was restored", target, err)
		}
		fmt.Fprintf(o.F.Err, "backed up %s to %s\n", target, path)
	}
	sum, err := backup.Restore(ctx, backup.RestoreOptions{Database: dbc, File: o.File, Target: o.Database, Keys: keys, Checked: checked,
		Progress: o.F.Err, Interactive: progress.IsTerminal(o.F.Err)})
	if _, ok := errors.AsType[*backup.SourceError](err); ok {
		return cmdutil.Usage(err)
	}
	if err != nil {
		return damaged(err)
	}
	if checked == nil {
		fmt.Fprintf(o.F.Err, "%s was complete: %.1f MB of SQL of database %s\n", o.File, float64(sum.Size)/1e6, orUnnamed(sum.Database))
	}
	fmt.Fprintf(o.F.Out, "restored %s into %s\n", o.File, target)
	return nil
}

// RunRestoreOffsite fetches the snapshot into a private directory in the backup directory,
// restores it, and removes the fetched copy (the snapshot stays offsite).
func RunRestoreOffsite(ctx context.Context, o *RestoreOptions, cfg config.Config) error {
	r, err := offsiteRepo(o.F, cfg)
	if err != nil {
		return err
	}
	s, err := r.Find(ctx, o.Snapshot)
	if err != nil {
		return fmt.Errorf("restore --from offsite: %w", err)
	}
	file, err := s.File()
	if err != nil {
		return fmt.Errorf("restore --from offsite: %w", err)
	}
	fmt.Fprintf(o.F.Err, "fetching snapshot %s of %s (%s, taken on %s at %s UTC)\n", s.ShortID, r.Repository,
		filepath.Base(file), s.Hostname, s.Time.UTC().Format(time.DateTime))
	if err := os.MkdirAll(cfg.Paths.BackupDir, 0o700); err != nil {
		return fmt.Errorf("restore --from offsite: %w", err)
	}
	dir, err := os.MkdirTemp(cfg.Paths.BackupDir, ".offsite-")
	if err != nil {
		return fmt.Errorf("restore --from offsite: %w", err)
	}
	defer os.RemoveAll(dir)
	if o.File, err = r.Fetch(ctx, s, dir); err != nil {
		return fmt.Errorf("restore --from offsite: %w", err)
	}
	return RunRestore(ctx, o, cfg)
}

// privateKeys unlocks the private key an encrypted backup needs: key, or the generated
// export key while emrkit still keeps it. A plain backup needs none.
func privateKeys(f *cmdutil.Factory, cfg config.Config, file, key, pass string) (openpgp.EntityList, error) {
	format, err := backup.Sniff(file)
	if err != nil {
		return nil, err
	}
	if format != backup.OpenPGP {
		return nil, nil
	}
	if key == "" && cfg.PGP.Mode == "generate" {
		files := pgp.Paths(cfg)
		if _, err := os.Stat(files.PrivateKey); err == nil {
			key = files.PrivateKey
			if _, err := os.Stat(files.Passphrase); err == nil && pass == "" {
				pass = files.Passphrase
			}
		}
	}
	if key == "" {
		return nil, backup.ErrNeedKey
	}
	return backup.ReadPrivateKey(key, pass)
}

// VerifyOptions are `emrkit backup verify`'s inputs.
type VerifyOptions struct {
	F                   *cmdutil.Factory
	File                string // "" = the newest backup
	Key, PassphraseFile string
	JSON                bool
	Alert               bool // mail a failed or interrupted test to alerts.mail_to
}

func newVerify(f *cmdutil.Factory) *cobra.Command {
	o := &VerifyOptions{F: f}
	cmd := &cobra.Command{
		Use:   "verify [FILE]",
		Short: "Prove a backup restores: load it into a scratch database and compare every table",
		Long: "Verify restores FILE (default: the newest backup) into the scratch database " + backup.ScratchDatabase + " on the\n" +
			"same server, dumps that again and compares, table by table, a digest of the data with the\n" +
			"backup's own, then drops the scratch database. The result (time, tables, rows) is recorded\n" +
			"for `emrkit doctor`. A damaged or truncated backup fails (exit 3) naming the table it stopped at.",
		Args: cobra.MaximumNArgs(1),
		RunE: f.WithConfig(func(cmd *cobra.Command, args []string, cfg config.Config) error {
			if len(args) == 1 {
				o.File = args[0]
			}
			err := RunVerify(cmd.Context(), o, cfg)
			if err != nil && o.Alert {
				return mailFailure(cmd.Context(), f, cfg, "the scheduled restore test failed", "emrkit backup verify; emrkit doctor", err)
			}
			return err
		}),
	}
	cmd.Flags().StringVar(&o.Key, "key", "", "private key `FILE` of an encrypted backup")
	cmd.Flags().StringVar(&o.PassphraseFile, "passphrase-file", "", "the private key's passphrase, first line of `FILE`")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&o.Alert, "alert", false, "mail a failed test to alerts.mail_to instead of only printing it (cron's runs)")
	return cmd
}

// RunVerify runs the restore test, records it, and exits 3 when it failed.
func RunVerify(ctx context.Context, o *VerifyOptions, cfg config.Config) error {
	dbc, err := plan.EMRDatabase(cfg, o.F.Host)
	if err != nil {
		return fmt.Errorf("backup verify: %w", err)
	}
	if o.File == "" {
		if o.File, err = newestBackup(o.F, cfg); err != nil {
			return err
		}
	}
	var res backup.VerifyResult
	keys, err := privateKeys(o.F, cfg, o.File, o.Key, o.PassphraseFile)
	if d, ok := errors.AsType[*backup.DamagedError](err); ok {
		// Not a backup at all (empty, random bytes): a failed test, recorded for doctor.
		res = backup.VerifyResult{File: o.File, Time: time.Now().UTC(), Database: dbc.Name, Problem: d.Error()}
	} else if err != nil {
		return fmt.Errorf("backup verify: %w", err)
	} else if res, err = backup.VerifyRestore(ctx, dbc, o.File, keys); err != nil {
		return err
	}
	if err := backup.SaveVerify(cfg.Paths.StateDir, res); err != nil {
		return fmt.Errorf("backup verify: record the result: %w", err)
	}
	if o.JSON {
		enc := json.NewEncoder(o.F.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if res.OK {
		fmt.Fprintf(o.F.Out, "PASS %s restores: %d tables, %d rows identical (%.1fs)\n", res.File, res.Tables, res.Rows, res.Seconds)
	}
	if res.Interrupted {
		return fmt.Errorf("backup verify of %s: %s; run it again", res.File, res.Problem)
	}
	if !res.OK {
		return &cmdutil.ExitErr{Code: cmdutil.ExitProblem, Err: fmt.Errorf("backup verify FAILED: %s", res.Problem)}
	}
	return nil
}

// newestBackup is the path of the newest backup `emrkit backup` took of the EMR's database.
func newestBackup(f *cmdutil.Factory, cfg config.Config) (string, error) {
	dbc, err := plan.EMRDatabase(cfg, f.Host)
	if err != nil {
		return "", err
	}
	newest, ok, err := backup.Newest(cfg.Paths.BackupDir, dbc.Name, backup.ManualLabel)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no backup of %s in %s yet; take one with `emrkit backup`", dbc.Name, cfg.Paths.BackupDir)
	}
	return newest.Path, nil
}

// damaged gives a backup that cannot be what it claims the exit code of a check that found a
// problem (3); other errors keep theirs.
func damaged(err error) error {
	if d, ok := errors.AsType[*backup.DamagedError](err); ok && d != nil {
		return &cmdutil.ExitErr{Code: cmdutil.ExitProblem, Err: err}
	}
	return err
}

func orUnnamed(db string) string {
	if db == "" {
		return "(not named in the dump)"
	}
	return db
}
