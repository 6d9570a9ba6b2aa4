package pgp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's controlling side and its terminal.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ptmx, tty
}

// TestDecryptAsksOnTheTerminal: with --key and no passphrase file, decrypt asks on the
// terminal, without echo; the passphrase typed there unlocks the key.
func TestDecryptAsksOnTheTerminal(t *testing.T) {
	c := newCLI(t, "generate")
	c.ok("pgp", "setup")
	files := mustFiles(c)
	plain, sealed := c.oscarEncrypt("a", 4096)
	key := filepath.Join(c.base, "offsite.sec.asc")
	os.Rename(files.PrivateKey, key)
	pass, _ := os.ReadFile(files.Passphrase)
	os.Remove(files.Passphrase)

	ptmx, tty := openPTY(t)
	go func() {
		time.Sleep(200 * time.Millisecond)
		ptmx.Write(pass) // ends in a newline, as typed
	}()
	out, errs, code := c.runOn(tty, "pgp", "decrypt", sealed, "--key", key)
	if code != 0 {
		t.Fatalf("decrypt with the passphrase typed on the terminal: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "passphrase of "+key) {
		t.Errorf("no prompt on the terminal:\n%s", errs)
	}
	sameFile(t, strings.TrimSuffix(sealed, ".pgp"), plain)

	c.setMode("none")
	c.ok("pgp", "setup")
}
