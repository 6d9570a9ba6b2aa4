package props

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
