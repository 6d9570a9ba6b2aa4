// Package fsutil owns crash-safe file replacement: every file emrkit writes on a clinic server
// goes through WriteAtomic, so a crash leaves either the old or the new content, never a mix.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// Owner is the numeric owner a file is written with; nil keeps the writer's own.
type Owner struct{ UID, GID int }

// WriteAtomic replaces path with data: temp file in the same directory, fsync, chmod/chown,
// rename over path, fsync of the directory. A symbolic link or a non-regular file at path is
// refused (CheckReplaceable), never replaced.
func WriteAtomic(path string, data []byte, mode os.FileMode, owner *Owner) error {
	if err := CheckReplaceable(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	cleanup := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Permissions before content: a secret is never readable by others, not even for a moment.
	if err := tmp.Chmod(mode); err != nil {
		return cleanup(err)
	}
	if owner != nil {
		if err := tmp.Chown(owner.UID, owner.GID); err != nil {
			return cleanup(err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return cleanup(err)
	}
	if err := tmp.Sync(); err != nil {
		return cleanup(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir makes a rename or removal in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
