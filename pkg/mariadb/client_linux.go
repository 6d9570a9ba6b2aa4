package mariadb

import (
	"os"

	"golang.org/x/sys/unix"
)

// optionFD returns a descriptor of an anonymous memory file holding text, mode 0600: the
// client reopens it through /dev/fd/3, and refuses option files others may write.
func optionFD(text []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("emrkit-client.cnf", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "emrkit-client.cnf")
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return nil, err
	}
	// Sealed: the child (or anyone it hands the descriptor to) cannot rewrite the options.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
