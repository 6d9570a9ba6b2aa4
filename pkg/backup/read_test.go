package backup

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// TestOnlyRegularFilesAreRead: a FIFO or a directory given as a backup is refused at once
// (a FIFO used to block the open); a link to a backup, such as a "latest" link, is read.
func TestOnlyRegularFilesAreRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.sql.gz")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, dir} {
		if _, err := Sniff(p); !errors.Is(err, fsutil.ErrNotRegular) {
			t.Errorf("Sniff(%s): %v, want not a regular file", p, err)
		}
		if _, err := OpenSQL(p, nil); !errors.Is(err, fsutil.ErrNotRegular) {
			t.Errorf("OpenSQL(%s): %v, want not a regular file", p, err)
		}
	}
	gz := filepath.Join(dir, "b.sql.gz")
	if err := os.WriteFile(gz, []byte{0x1f, 0x8b, 8, 0}, 0o600); err != nil {
		t.Fatal(err)
	}
	latest := filepath.Join(dir, "latest.sql.gz")
	if err := os.Symlink(gz, latest); err != nil {
		t.Fatal(err)
	}
	if f, err := Sniff(latest); err != nil || f != Gzip {
		t.Fatalf("Sniff(a link to a backup) = %v, %v", f, err)
	}
}
