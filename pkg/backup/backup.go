// Package backup owns emrkit's database backups: the dump every destructive database step
// takes first. A backup is written as a hidden partial file and renamed into place only once
// mariadb-dump has succeeded and the data is on disk, so a file that looks like a backup is one.
package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/mariadb"
)

// Dump writes dir/<database>-<label>-<UTC time>.sql.gz (0600) with mariadb-dump
// --single-transaction, including routines, triggers and events; tables limits it to those.
// Credentials reach mariadb-dump through a 0600 option file, never its argv.
func Dump(ctx context.Context, db config.Database, dir, label string, tables ...string) (string, error) {
	if err := mariadb.ValidIdentifier(db.Name); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	for _, t := range tables {
		if err := mariadb.ValidIdentifier(t); err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("backup: %w; set paths.backup_dir to a writable directory", err)
	}
	defaults, cleanup, err := mariadb.DefaultsFile(dir, db)
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	defer cleanup()

	name := fmt.Sprintf("%s-%s-%s.sql.gz", db.Name, label, time.Now().UTC().Format("20060102T150405.000Z"))
	final := filepath.Join(dir, name)
	partial, err := os.CreateTemp(dir, "."+name+".partial-*")
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			partial.Close()
			os.Remove(partial.Name())
		}
	}()
	if err := partial.Chmod(0o600); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	args := append([]string{"--defaults-extra-file=" + defaults, "--single-transaction", "--routines",
		"--triggers", "--events", "--hex-blob", "--", db.Name}, tables...)
	cmd := exec.CommandContext(ctx, "mariadb-dump", args...)
	zw := gzip.NewWriter(partial)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = zw, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("backup of %s failed: %v: %s", db.Name, err, strings.TrimSpace(stderr.String()))
	}
	if err := finish(zw, partial); err != nil {
		return "", fmt.Errorf("backup of %s failed writing %s: %w (check free space in %s)", db.Name, final, err, dir)
	}
	if err := os.Rename(partial.Name(), final); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	keep = true
	return final, fsutil.SyncDir(dir)
}

func finish(zw io.WriteCloser, f *os.File) error {
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}
