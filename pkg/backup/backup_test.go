package backup

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
)

func TestDumpIsCompleteRootOnlyAndAtomic(t *testing.T) {
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_bk")
	oscarfixture.Create(t, srv.DB(t, "oscar_bk"), false)
	dir := filepath.Join(t.TempDir(), "backups")
	path, err := Dump(context.Background(), cfg, dir, "test", "security")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("modes %v %v", fi.Mode(), di.Mode())
	}
	f, _ := os.Open(path)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sql, _ := io.ReadAll(zr)
	if !strings.Contains(string(sql), "CREATE TABLE `security`") || !strings.Contains(string(sql), "'oscardoc'") ||
		strings.Contains(string(sql), "SecurityArchive") || !strings.Contains(string(sql), "-- Dump completed") {
		t.Fatalf("dump content:\n%s", sql)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left in backup dir: %v (option file or partial left behind?)", entries)
	}

	// A failing dump leaves nothing that looks like a backup.
	_, err = Dump(context.Background(), cfg, dir, "bad", "no_such_table")
	if err == nil || !strings.Contains(err.Error(), "backup of oscar_bk failed") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("failed dump left files: %v", entries)
	}
	if _, err := Dump(context.Background(), cfg, dir, "x", "a;b"); err == nil {
		t.Fatal("bad table name accepted")
	}
}
