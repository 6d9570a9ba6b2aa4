package phpini

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/apache"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// sapi writes a Debian-shaped /etc/php/8.2/apache2 under dir: php.ini with sections (a
// [HOST=] one that must not count), a conf.d link into mods-available as Debian makes them.
func sapi(t *testing.T, dir, phpIni, confd string) string {
	t.Helper()
	s := filepath.Join(dir, "8.2", "apache2")
	for _, d := range []string{filepath.Join(s, "conf.d"), filepath.Join(dir, "8.2", "mods-available")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(s, "php.ini"), []byte(phpIni), 0o644)
	os.WriteFile(filepath.Join(dir, "8.2", "mods-available", "admin.ini"), []byte(confd), 0o644)
	if err := os.Symlink("../../mods-available/admin.ini", filepath.Join(s, "conf.d", "50-admin.ini")); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEffectiveReadsAsPHPDoes(t *testing.T) {
	s := sapi(t, t.TempDir(), "[PHP]\nmemory_limit = 128M ; Debian's\nmax_input_vars = 1000\nexpose_php = Off\n[HOST=dev.example]\nmemory_limit = 1G\n"+
		"[Session]\nsession.cookie_samesite =\n", "memory_limit = 512M\n; upload_max_filesize = 1G\n")
	cur, err := Effective(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if cur["memory_limit"] != "512M" || cur["max_input_vars"] != "1000" || cur["expose_php"] != "Off" || cur["upload_max_filesize"] != "2M" {
		t.Fatalf("effective: %v", cur)
	}
	// The admin's 512M is more than OpenEMR asks: it is not written, so never lowered.
	got := string(Content(Wanted(cur, false)))
	for _, want := range []string{"max_input_vars = 3000\n", "post_max_size = 30M\n", "upload_max_filesize = 30M\n", "session.use_strict_mode = 1\n",
		"session.cookie_httponly = 1\n", "session.cookie_samesite = Lax\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("drop-in lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "memory_limit") || strings.Contains(got, "cookie_secure") {
		t.Errorf("drop-in lowers memory_limit or sets cookie_secure without HTTPS:\n%s", got)
	}
	if !strings.Contains(string(Content(Wanted(cur, true))), "session.cookie_secure = 1\n") {
		t.Error("no cookie_secure with HTTPS")
	}
	for v, want := range map[string]bool{"-1": true, "3G": true, "256M": true, "255M": false, "262144K": true, "x": false} {
		if Enough(v, "256M") != want {
			t.Errorf("Enough(%q, 256M) = %v", v, !want)
		}
	}
}

// TestStepAndUndo: the drop-in is written 0644 and journaled; undo removes it; an admin's
// edit since is kept.
func TestStepAndUndo(t *testing.T) {
	dir := t.TempDir()
	s := sapi(t, dir, "max_input_vars = 1000\n", "")
	dirs, err := Env{Dir: dir}.SAPIDirs()
	if err != nil || len(dirs) != 1 || dirs[0] != s {
		t.Fatalf("SAPI dirs %v %v", dirs, err)
	}
	st, err := NewStep(s, false, apache.Env{}, "0.8.0")
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var out strings.Builder
	r := &step.Runner{Journal: j, Out: &out, Undoers: step.Registry{Kind: Undoer{}}}
	ctx := context.Background()
	if rep, err := r.Apply(ctx, []step.Step{st}); err != nil || rep.Applied != 1 {
		t.Fatalf("apply: %+v %v\n%s", rep, err, out.String())
	}
	path := filepath.Join(s, "conf.d", DropIn)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("drop-in: %v %v", fi, err)
	}
	if cur, _ := Effective(s, ""); cur["max_input_vars"] != "3000" {
		t.Fatalf("max_input_vars with the drop-in: %q", cur["max_input_vars"])
	}
	all := func(journal.Entry) bool { return true }
	if _, err := r.Revert(ctx, all); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("drop-in after undo: %v", err)
	}
	r.Apply(ctx, []step.Step{st})
	os.WriteFile(path, []byte("max_input_vars = 5000\n"), 0o644)
	if rep, err := r.Revert(ctx, all); err != nil || rep.Kept != 1 {
		t.Fatalf("undo after an edit: %+v %v", rep, err)
	}
}
