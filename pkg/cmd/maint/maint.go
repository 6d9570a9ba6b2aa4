// Package maint is `emrkit maint`, called only by the package's maintainer scripts: it carries
// out what pkg/maint decides for each dpkg action. It never prompts.
package maint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmd/apply"
	"github.com/emrkit/emrkit/pkg/cmd/revert"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/maint"
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
		_, err := revert.Run(ctx, &revert.Options{F: f, NewerThan: op.Version}, cfg)
		return err
	case maint.Purge:
		return purge(ctx, f, cfg)
	}
	return fmt.Errorf("maint: unhandled operation %d", op.Kind)
}

func converge(ctx context.Context, f *cmdutil.Factory, cfg config.Config) error {
	if _, err := os.Stat(f.ConfigPath); errors.Is(err, fs.ErrNotExist) {
		if err := config.Write(f.ConfigPath, cfg); err != nil {
			return err
		}
		fmt.Fprintf(f.Out, "emrkit: wrote %s\n", f.ConfigPath)
	}
	if err := keepBinaryCopy(cfg.Paths.StateDir); err != nil {
		return err
	}
	_, err := apply.Run(ctx, &apply.Options{F: f}, cfg)
	return err
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
