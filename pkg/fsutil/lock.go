package fsutil

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked matches (errors.Is) the *LockedError TryLock returns when the lock is held.
var ErrLocked = errors.New("locked by another process")

// LockedError names who holds a lock.
type LockedError struct{ Holder string }

func (e *LockedError) Error() string        { return ErrLocked.Error() + " (" + e.Holder + ")" }
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// TryLock takes an exclusive flock on path (created 0600) without waiting and writes the
// holder's pid and command line into it, so a refused process can say who holds it. The
// kernel releases the lock when the holder exits, even by SIGKILL.
func TryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "holder unknown"
			}
			return nil, &LockedError{Holder: who}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d: %s\n", os.Getpid(), strings.Join(os.Args, " "))
	}
	return f, nil
}
