package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TextLimit bounds what emrkit reads of a text file it edits (oscar.properties, an Apache
// conf, a cron file, sqlconf.php): the largest real one is a few KiB, so a file bigger than
// this is not the file emrkit expects, and reading it whole would cost that much memory.
const TextLimit = 8 << 20

// ErrLink matches (errors.Is) a *LinkError.
var ErrLink = errors.New("is a symbolic link")

// ErrNotRegular matches both a *LinkError and a *NotRegularError: path holds something other
// than a regular file, which emrkit neither reads through nor replaces.
var ErrNotRegular = errors.New("is not a regular file")

// LinkError is a symbolic link where emrkit reads or writes a file. emrkit never follows one:
// a link to /etc/shadow in place of oscar.properties would copy shadow into a file others can
// read, and replacing the link with a regular file would undo the admin's layout.
type LinkError struct{ Path, Target string }

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s is a symbolic link to %s; emrkit does not follow links: point the configuration at the real file, or replace the link with the file", e.Path, e.Target)
}

func (e *LinkError) Is(target error) bool { return target == ErrLink || target == ErrNotRegular }

// NotRegularError is a directory, FIFO, device or socket where emrkit expects a file.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is a %s, not a regular file; emrkit reads and writes only regular files", e.Path, kind(e.Mode))
}

func (e *NotRegularError) Is(target error) bool { return target == ErrNotRegular }

// TooLargeError is a file bigger than the reader's limit, refused before it is read.
type TooLargeError struct {
	Path        string
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, more than the %d this file can be; it is not the file emrkit expects (check the path)", e.Path, e.Size, e.Limit)
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

// linkError describes path, known to be a symbolic link.
func linkError(path string) error {
	target, err := os.Readlink(path)
	if err != nil {
		target = "an unreadable target"
	}
	return &LinkError{Path: path, Target: target}
}

// OpenRegular opens path for reading without following a symbolic link at its last component
// (links in the directories above it are the admin's layout and are followed) and only if it
// is a regular file. O_NONBLOCK keeps a FIFO planted at path from hanging the open.
func OpenRegular(path string) (*os.File, error) {
	return openNoFollow(path, syscall.O_RDONLY)
}

func openNoFollow(path string, flag int) (*os.File, error) {
	fd, err := syscall.Open(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, linkError(path)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return f, nil
}

// ReadFile reads the regular file at path the way OpenRegular opens it, refusing one bigger
// than limit bytes before reading it. A missing file is an error matching fs.ErrNotExist.
func ReadFile(path string, limit int64) ([]byte, error) {
	data, _, err := ReadFileStat(path, limit)
	return data, err
}

// ReadThroughLink is ReadFile for a file emrkit only reads and the system links by design
// (Apache's sites-enabled/*.conf point into sites-available): the link is resolved and its
// target read with ReadFile's checks, so a FIFO or an oversized file is still refused.
func ReadThroughLink(path string, limit int64) ([]byte, error) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	return ReadFile(target, limit)
}

// OpenThroughLink is OpenRegular for a file the admin names to be read (a backup given to
// restore, which may be a "latest" link): a link is resolved, and the file must be regular.
func OpenThroughLink(path string) (*os.File, error) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	f, err := OpenRegular(target)
	var nr *NotRegularError
	if errors.As(err, &nr) {
		nr.Path = path
	}
	return f, err
}

// ReadFileStat is ReadFile that also returns what the file's own descriptor says of it (mode,
// owner), so the content and the metadata are of one file even if path is swapped meanwhile.
func ReadFileStat(path string, limit int64) ([]byte, fs.FileInfo, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() > limit {
		return nil, nil, &TooLargeError{Path: path, Size: fi.Size(), Limit: limit}
	}
	// The size can grow after Stat; the limit holds whatever the file does meanwhile.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, nil, &TooLargeError{Path: path, Size: int64(len(data)), Limit: limit}
	}
	return data, fi, nil
}

// SetModeOwner gives the regular file or directory at path mode and, unless owner is nil,
// owner, through a descriptor opened without following a link: chmod(2) by name would change
// a link's target instead.
func SetModeOwner(path string, mode fs.FileMode, owner *Owner) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) {
		return linkError(path)
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	// Owner first: a 0640 meant for root:www-data must never be 0640 for another group.
	if owner != nil {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			return err
		}
	}
	return f.Chmod(mode)
}

// CheckReplaceable refuses to replace path when it is a symbolic link or not a regular file;
// a missing path is fine (it will be created).
func CheckReplaceable(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return linkError(path)
	}
	if !fi.Mode().IsRegular() {
		return &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return nil
}
