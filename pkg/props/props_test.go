package props

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

const sample = "# OSCAR settings\n" +
	"TOTP=0\n" +
	"\n" +
	"! legacy comment\n" +
	"  PGP_BIN : /usr/bin/gpg\n" +
	"TOTP = 0\n" + // OSCAR reads this one, the last
	"multi=a\\\n    b\n" +
	"tail=x"

func TestParseRoundTripsBytes(t *testing.T) {
	for _, in := range []string{sample, "", "\n", "a=b\r\nc=d\r\n", "x\\", "k=v\\\\\n"} {
		if got := string(Parse([]byte(in)).Bytes()); got != in {
			t.Errorf("round trip of %q gave %q", in, got)
		}
	}
}

func TestGetReadsLastOccurrence(t *testing.T) {
	d := Parse([]byte(sample))
	cases := map[string]string{"TOTP": "0", "PGP_BIN": "/usr/bin/gpg", "multi": "ab", "tail": "x"}
	for k, want := range cases {
		if got, ok := d.Get(k); !ok || got != want {
			t.Errorf("Get(%s) = %q,%v want %q", k, got, ok, want)
		}
	}
	if _, ok := d.Get("legacy"); ok {
		t.Error("comment read as key")
	}
}

func TestSetEditsLastOccurrenceKeepingStyle(t *testing.T) {
	d := Parse([]byte(sample))
	if got := d.Set("TOTP", "1"); got != "TOTP = 1" {
		t.Fatalf("Set returned %q", got)
	}
	out := string(d.Bytes())
	want := strings.Replace(sample, "TOTP = 0\n", "TOTP = 1\n", 1)
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	if !strings.Contains(out, "TOTP=0\n") {
		t.Fatal("earlier occurrence must be left alone")
	}
}

func TestSetAppendsAndRemoveRestoresExactly(t *testing.T) {
	for _, in := range []string{sample, "a=b\n", "a=b", "", "a=b\r\n"} {
		d := Parse([]byte(in))
		hadNewline := d.endsWithNewline()
		d.Set("NEWKEY", "v")
		if v, _ := d.Get("NEWKEY"); v != "v" {
			t.Fatalf("appended value not read back in %q", d.Bytes())
		}
		d.Remove("NEWKEY", !hadNewline)
		if got := string(d.Bytes()); got != in {
			t.Errorf("append+remove of %q gave %q", in, got)
		}
	}
}

func TestSetCollapsesContinuedValue(t *testing.T) {
	d := Parse([]byte("multi=a\\\n    b\nz=1\n"))
	d.Set("multi", "c")
	if got := string(d.Bytes()); got != "multi=c\nz=1\n" {
		t.Fatalf("got %q", got)
	}
}

func TestCheckKeyAndValue(t *testing.T) {
	if CheckKey("demographic.export.encryptedOnly") != nil || CheckKey("bad key") == nil || CheckKey("a=b") == nil {
		t.Error("CheckKey")
	}
	if CheckValue("GNUPGHOME=/var/lib/tomcat9/.gnupg") != nil || CheckValue("a\nb") == nil || CheckValue(" x") == nil || CheckValue(`c:\x`) == nil {
		t.Error("CheckValue")
	}
}

func TestFileKeepsOwnerAndMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "oscar.properties")
	os.WriteFile(p, []byte(sample), 0o640)
	os.Chown(p, 4242, 4343)
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Doc.Set("TOTP", "1")
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if os.Getuid() == 0 && (st.Uid != 4242 || st.Gid != 4343) {
		t.Fatalf("owner %d:%d, want 4242:4343", st.Uid, st.Gid)
	}
}

func TestLoadMissingNamesFix(t *testing.T) {
	_, err := Load("/nonexistent/oscar.properties")
	if err == nil || !strings.Contains(err.Error(), "oscar.properties in the emrkit config") {
		t.Fatalf("got %v", err)
	}
}

func TestSymlinkedPropertiesAreRefused(t *testing.T) {
	// A link in place of oscar.properties must not copy its target (here a stand-in for
	// /etc/shadow) into the properties, nor be replaced by a regular file.
	dir := t.TempDir()
	shadow := filepath.Join(dir, "shadow")
	os.WriteFile(shadow, []byte("root:$6$ZZSECRET:19000::::::\n"), 0o600)
	link := filepath.Join(dir, "oscar.properties")
	os.Symlink(shadow, link)
	k := KeyStep{Path: link, Key: "ENABLE_2FA", Value: "true"}
	ctx := context.Background()
	err := k.Preflight(ctx)
	if !errors.Is(err, fsutil.ErrLink) || !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), shadow) || strings.Contains(err.Error(), "ZZSECRET") {
		t.Fatalf("preflight: want an error naming link and target, got %v", err)
	}
	if _, _, err := k.Capture(ctx); !errors.Is(err, fsutil.ErrLink) {
		t.Fatalf("capture: %v", err)
	}
	if err := k.Apply(ctx, nil); !errors.Is(err, fsutil.ErrLink) {
		t.Fatalf("apply: %v", err)
	}
	if got, _ := os.Readlink(link); got != shadow {
		t.Fatalf("link replaced: %q", got)
	}
	if data, _ := os.ReadFile(shadow); string(data) != "root:$6$ZZSECRET:19000::::::\n" {
		t.Fatalf("target changed: %q", data)
	}
	if fi, _ := os.Stat(shadow); fi.Mode().Perm() != 0o600 {
		t.Fatalf("target mode changed: %v", fi.Mode())
	}
}

func TestUndoLeavesALinkAlone(t *testing.T) {
	// The admin replaced the file emrkit edited with a link since: revert keeps the link.
	dir := t.TempDir()
	p := filepath.Join(dir, "oscar.properties")
	os.WriteFile(p, []byte("TOTP=0\n"), 0o640)
	ctx := context.Background()
	k := KeyStep{Path: p, Key: "TOTP", Value: "1"}
	d, b, err := k.Capture(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "oscar.properties.real")
	os.Rename(p, real)
	os.Symlink(real, p)
	e := journal.Entry{ID: k.ID(), Kind: Kind, Desired: d, Before: b}
	out, note, err := Undoer{}.Undo(ctx, e)
	if err != nil || out != step.Kept || !strings.Contains(note, "link") {
		t.Fatalf("want Kept with a note, got %v %q %v", out, note, err)
	}
	if got, _ := os.Readlink(p); got != real {
		t.Fatalf("link replaced: %q", got)
	}
	if data, _ := os.ReadFile(real); string(data) != "TOTP=1\n" {
		t.Fatalf("target changed: %q", data)
	}
}
