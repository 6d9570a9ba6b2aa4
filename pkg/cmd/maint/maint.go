// Package maint is `emrkit maint`, called only by the package's maintainer scripts: it carries
// out what pkg/maint decides for each dpkg action. It never prompts.
package maint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/cmd/apply"
	"github.com/emrkit/emrkit/pkg/cmd/revert"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/debconf"
	"github.com/emrkit/emrkit/pkg/debversion"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/maint"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/migrate"
	"github.com/emrkit/emrkit/pkg/step"
)

// BinaryCopy is the name of the binary copy kept in the state dir, which postrm purge runs
// after dpkg has removed /usr/bin/emrkit.
const BinaryCopy = "emrkit"

func New(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "maint postinst|prerm|postrm ACTION [VERSION...]",
		Short:  "Carry out a maintainer-script action (for the package's scripts only)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, err := maint.Decide(args[0], args[1], args[2:], f.Version)
			if err != nil {
				return cmdutil.Usage(err)
			}
			return Run(cmd.Context(), f, op)
		},
	}
}

func Run(ctx context.Context, f *cmdutil.Factory, op maint.Op) error {
	if op.Kind == maint.Nothing {
		return nil
	}
	cfg, err := f.Config()
	if err != nil {
		return err
	}
	switch op.Kind {
	case maint.Converge:
		return converge(ctx, f, cfg)
	case maint.Downgrade:
		fmt.Fprintf(f.Out, "emrkit: downgrade to %s: undoing the changes of newer releases\n", op.Version)
		match := revert.Match(false, op.Version)
		if err := backupBefore(ctx, f, cfg, "before-downgrade", match); err != nil {
			return err
		}
		older, err := debversion.Compare(op.Version, step.SealedSince)
		if err != nil {
			return fmt.Errorf("downgrade to %s: %w", op.Version, err)
		}
		_, err = revert.Run(ctx, &revert.Options{F: f, NewerThan: op.Version, Unseal: older < 0}, cfg)
		return err
	case maint.Purge:
		return purge(ctx, f, cfg)
	}
	return fmt.Errorf("maint: unhandled operation %d", op.Kind)
}

func converge(ctx context.Context, f *cmdutil.Factory, cfg config.Config) error {
	cfg, restart, err := configure(f, cfg)
	if err != nil {
		return err
	}
	if err := keepBinaryCopy(cfg.Paths.StateDir); err != nil {
		return err
	}
	_, err = apply.Run(ctx, &apply.Options{F: f, RestartMariaDB: restart}, cfg)
	return err
}

// RestartQuestion is the debconf permission to restart MariaDB for the portal replica's
// binary log during the package's own runs. It is a permission for those runs, not a
// setting: it stays out of the config file (an older release's loader must never meet it).
const RestartQuestion = "emrkit/portal-replica-restart"

// answersFile keeps the debconf answers last written into the config, to tell an admin's
// hand edit of the file from a new answer.
const answersFile = "debconf-answers.json"

// configure merges the debconf answers (when a frontend runs us) into the configuration
// file and writes it when it changed. restart is RestartQuestion's answer.
func configure(f *cmdutil.Factory, cfg config.Config) (_ config.Config, restart bool, _ error) {
	client, err := debconf.FromEnv()
	if errors.Is(err, debconf.ErrNoFrontend) {
		client = nil // run by hand: the file is the only source
	} else if err != nil {
		return cfg, false, err
	}
	answers := map[string]string{}
	if client != nil {
		names := []string{RestartQuestion}
		for _, q := range maint.Questions {
			names = append(names, q.Name)
		}
		for _, name := range names {
			v, err := client.Get(name)
			var de *debconf.Error
			if errors.As(err, &de) && de.Code == debconf.BadParams {
				continue // not registered (templates of an older release)
			}
			if err != nil {
				return cfg, false, err
			}
			answers[name] = v
		}
	}
	restart = answers[RestartQuestion] == "true"
	delete(answers, RestartQuestion)
	cfg, err = merge(f, client, cfg, answers)
	return cfg, restart, err
}

// merge writes the debconf answers over cfg into the config file when that changes it,
// keeping an admin's hand edits.
func merge(f *cmdutil.Factory, client *debconf.Client, cfg config.Config, answers map[string]string) (config.Config, error) {
	lastPath := filepath.Join(cfg.Paths.StateDir, answersFile)
	last := map[string]string{}
	if data, err := fsutil.ReadFile(lastPath, fsutil.TextLimit); err == nil {
		if err := json.Unmarshal(data, &last); err != nil {
			return cfg, fmt.Errorf("%s is corrupt (%v); remove it to take every debconf answer as given", lastPath, err)
		}
	}
	merged, resync, written, err := maint.Merge(cfg, answers, last)
	if err != nil {
		return cfg, err
	}
	for q, v := range resync {
		fmt.Fprintf(f.Err, "emrkit: keeping the hand edit of %s in %s\n", q, f.ConfigPath)
		if err := client.Set(q, v); err != nil {
			return cfg, err
		}
	}
	if err := config.WriteIfChanged(f.ConfigPath, merged); err != nil {
		return cfg, err
	}
	if client != nil {
		data, _ := json.Marshal(written)
		if err := os.MkdirAll(cfg.Paths.StateDir, 0o700); err != nil {
			return cfg, err
		}
		if err := fsutil.WriteAtomic(lastPath, data, 0o600, nil); err != nil {
			return cfg, err
		}
	}
	return merged, nil
}

// backupBefore dumps the whole EMR database when any entry that match selects changed it.
// A database that is gone (MariaDB removed before a purge) has nothing to back up or undo.
func backupBefore(ctx context.Context, f *cmdutil.Factory, cfg config.Config, label string, match func(journal.Entry) bool) error {
	entries, err := journal.Read(cfg.Paths.StateDir)
	if err != nil {
		return err
	}
	touchesDB := slices.ContainsFunc(entries, func(e journal.Entry) bool {
		return match(e) && (e.State == journal.Done || e.State == journal.Pending) &&
			(strings.HasPrefix(e.Kind, "twofa.") || strings.HasPrefix(e.Kind, migrate.KindPrefix))
	})
	if !touchesDB {
		return nil
	}
	path, err := backup.Dump(ctx, cfg.Database, cfg.Paths.BackupDir, label)
	if err != nil {
		if _, openErr := mariadb.Open(ctx, cfg.Database); errors.Is(openErr, mariadb.ErrUnreachable) || errors.Is(openErr, mariadb.ErrNoDatabase) {
			fmt.Fprintf(f.Err, "emrkit: no backup (%v); the database changes cannot be undone either\n", openErr)
			return nil
		}
		return fmt.Errorf("%w; nothing was undone", err)
	}
	fmt.Fprintf(f.Out, "emrkit: backed up %s to %s\n", cfg.Database.Name, path)
	return nil
}

// keepBinaryCopy puts this binary in the state dir, for a purge after the package is gone.
func keepBinaryCopy(stateDir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("keep binary copy: %w", err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("keep binary copy: %w", err)
	}
	dst := filepath.Join(stateDir, BinaryCopy)
	if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("keep binary copy: %w", err)
	}
	return fsutil.WriteAtomic(dst, data, 0o755, nil)
}

// purge undoes every change, then removes what the package created. If any change cannot be
// undone, the journal and config stay so that the purge can be retried: removing them would
// lose the only record of what to restore.
func purge(ctx context.Context, f *cmdutil.Factory, cfg config.Config) error {
	if err := backupBefore(ctx, f, cfg, "before-purge", revert.Match(true, "")); err != nil {
		return err
	}
	if _, err := revert.Run(ctx, &revert.Options{F: f, All: true}, cfg); err != nil {
		return fmt.Errorf("purge: %w; the journal in %s is kept, fix the cause and run `dpkg --purge emrkit` again", err, cfg.Paths.StateDir)
	}
	if err := os.Remove(f.ConfigPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("purge: %w", err)
	}
	// The directory goes only if it is empty: an admin's own files there are not emrkit's.
	if err := os.Remove(filepath.Dir(f.ConfigPath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(f.Err, "emrkit: kept %s: %v\n", filepath.Dir(f.ConfigPath), err)
	}
	if err := os.RemoveAll(cfg.Paths.StateDir); err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	if entries, err := os.ReadDir(cfg.Paths.BackupDir); err == nil && len(entries) > 0 {
		fmt.Fprintf(f.Out, "emrkit: purged; backups are kept in %s (remove them when no longer needed)\n", cfg.Paths.BackupDir)
	} else {
		fmt.Fprintln(f.Out, "emrkit: purged; every change emrkit made was undone")
	}
	return nil
}
