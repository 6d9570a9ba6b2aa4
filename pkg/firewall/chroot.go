package firewall

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// RootDetector returns the chroot guard of principle 7: this process is in a chroot when its
// root directory is not the one of pid 1 (a debootstrap image, piuparts, a build's chroot),
// which shares the host's network namespace. A private mount namespace over the same root —
// a systemd unit with PrivateTmp= or ProtectSystem=, `unshare --mount`, `ip netns exec` — is
// not a chroot, and the firewall applies there (ischroot compared mount IDs, which every new
// mount namespace renumbers, and so left such clinics without a firewall). Inside a container
// with a pid namespace of its own, pid 1 is the container's and shares its root: the firewall
// applies to the container's network.
//
// The roots are compared by device and inode through procRoot/1/root. Where pid 1's root
// cannot be followed (pid 1 in a parent user namespace, as in some sandboxes), the root mount
// of procRoot/self/mountinfo and procRoot/1/mountinfo is compared by its device and the path
// it shows of that filesystem — not by mount ID. A /proc that is not mounted cannot tell, and
// cannot-tell is an error the caller treats as a chroot.
func RootDetector(procRoot string) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) {
		var self, init syscall.Stat_t
		if err := syscall.Stat("/", &self); err != nil {
			return false, fmt.Errorf("stat /: %w", err)
		}
		err := syscall.Stat(filepath.Join(procRoot, "1", "root"), &init)
		if err == nil {
			return self.Dev != init.Dev || self.Ino != init.Ino, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("%s is not mounted, so pid 1's root cannot be compared with this one", procRoot)
		}
		return sameRootMount(procRoot)
	}
}

// sameRootMount compares the root mounts of this process and pid 1 as mountinfo shows them.
func sameRootMount(procRoot string) (bool, error) {
	read := func(pid string) (string, bool, error) {
		data, err := os.ReadFile(filepath.Join(procRoot, pid, "mountinfo"))
		if err != nil {
			return "", false, fmt.Errorf("neither pid 1's root nor its mounts can be read: %w", err)
		}
		root, ok := RootMount(string(data))
		return root, ok, nil
	}
	mine, ok, err := read("self")
	if err != nil {
		return false, err
	}
	if !ok {
		return true, nil // nothing is mounted at this root: a directory of a bigger tree
	}
	theirs, ok, err := read("1")
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("pid 1's mounts show no root mount")
	}
	return mine != theirs, nil
}

// RootMount returns what identifies the filesystem tree mounted at "/" in a mountinfo
// (proc_pid_mountinfo(5)): its device and the path of that filesystem at its root, e.g.
// "254:0 /" for a whole filesystem, "254:0 /srv/chroot" for a directory bind-mounted as a
// chroot. Mount IDs are left out: each mount namespace numbers its mounts anew. The last
// mount at "/" wins, as the kernel stacks them.
func RootMount(mountinfo string) (string, bool) {
	var root string
	var ok bool
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" {
			root, ok = f[2]+" "+f[3], true
		}
	}
	return root, ok
}
