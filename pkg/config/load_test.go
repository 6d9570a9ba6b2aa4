package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEmptyConfigIsAnError(t *testing.T) {
	for _, content := range []string{"", "\n\n", "# only a comment\n# and another\n", "---\n"} {
		for _, explicit := range []bool{true, false} {
			_, err := Load(writeConfig(t, content), explicit)
			if err == nil || !strings.Contains(err.Error(), "holds no settings") || !strings.Contains(err.Error(), "delete it to use the defaults") {
				t.Errorf("%q explicit=%v: want 'holds no settings', got %v", content, explicit, err)
			}
		}
	}
}

func TestUnknownKeysNameFileLineAndDottedKey(t *testing.T) {
	cases := map[string]string{
		"profile: oscar\nfirewall:\n  enable: true\n  alow_from: [10.0.0.1]\n": ":4: unknown key firewall.alow_from;",
		"profile: oscar\ndatabase: {name: oscar, pasword_file: /x}\n":          ":2: unknown key database.pasword_file;",
		"profile: oscar\n\n\nbackups:\n  keep: 3\n":                            ":4: unknown key backups;",
		"portal:\n  tunnel:\n    hots: x\n":                                    ":3: unknown key portal.tunnel.hots;",
	}
	for in, want := range cases {
		p := writeConfig(t, in)
		_, err := Load(p, true)
		if err == nil || !strings.Contains(err.Error(), p+want) {
			t.Errorf("%q: got %v, want %q", in, err, p+want)
		}
	}
}

func TestNotAMapIsAnError(t *testing.T) {
	_, err := Load(writeConfig(t, "- a\n- b\n"), true)
	if err == nil || !strings.Contains(err.Error(), "must be a map of settings") {
		t.Fatalf("got %v", err)
	}
}

func TestOversizedConfigIsRefusedBeforeParsing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	f, _ := os.Create(p)
	f.WriteString("profile: oscar\n")
	f.Truncate(150 << 20) // the reported 150 MB; sparse, so the test costs no disk
	f.Close()
	_, err := Load(p, true)
	var tl *fsutil.TooLargeError
	if !errors.As(err, &tl) || !strings.Contains(err.Error(), p) {
		t.Fatalf("want TooLargeError naming the file, got %v", err)
	}
}

func TestSymlinkedConfigIsRefused(t *testing.T) {
	real := writeConfig(t, "profile: oscar\n")
	link := filepath.Join(t.TempDir(), "config.yaml")
	os.Symlink(real, link)
	if _, err := Load(link, true); !errors.Is(err, fsutil.ErrLink) {
		t.Fatalf("want a link error, got %v", err)
	}
}

func TestAliasBombIsRefusedQuickly(t *testing.T) {
	// "Billion laughs": nine levels of ten aliases would expand to 10^9 strings.
	// The anchors sit under a real key, so the decoder (not the unknown-key check) meets them.
	var b strings.Builder
	b.WriteString("migrations:\n  - &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		prev := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "  - &a%d [%s%s]\n", i, strings.Repeat(prev+", ", 9), prev)
	}
	b.WriteString("totp: {users: *a8}\n")
	start := time.Now()
	_, err := Load(writeConfig(t, b.String()), true)
	if err == nil {
		t.Fatal("alias bomb accepted")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("alias bomb took %v", d)
	}
	t.Log(err)
	if len(err.Error()) > 500 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error not one bounded line: %q", err)
	}
}

// BenchmarkOversizedConfig loads the 150 MB configuration of issue 23 (0.6.0: 915 MB of
// memory); it is refused from its size, so each load costs one open and one fstat.
func BenchmarkOversizedConfig(b *testing.B) {
	p := filepath.Join(b.TempDir(), "config.yaml")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	f.WriteString("profile: oscar\ntotp:\n  users:\n")
	line := []byte("    - " + strings.Repeat("a", 40) + "\n")
	chunk := bytes.Repeat(line, 1<<14)
	for written := 0; written < 150<<20; written += len(chunk) {
		f.Write(chunk)
	}
	f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(p, true); !errors.As(err, new(*fsutil.TooLargeError)) {
			b.Fatal(err)
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MB")
}

func TestFIFOConfigIsRefusedWithoutHanging(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, true); !errors.Is(err, fsutil.ErrNotRegular) || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("want a not-a-regular-file error, got %v", err)
	}
}

// TestHostileValuesGiveOneBoundedLine: whatever a key or value holds (a line break, a pasted
// page), the error is one line that names it cut short; a second document is refused, not
// silently ignored, and a trailing --- is harmless.
func TestHostileValuesGiveOneBoundedLine(t *testing.T) {
	long := strings.Repeat("x", 600)
	for in, want := range map[string]string{
		"profile: " + long + "\n":                          `profile: "` + strings.Repeat("x", 64) + `…" is not one of`,
		"profile: oscar\n\"bad\\nkey\": 1\n":               `:2: unknown key "bad\nkey"; fix or remove it`,
		"profile: oscar\n" + long + ": 1\n":                `:2: unknown key "` + strings.Repeat("x", 64) + `…"`,
		"database:\n  name: \"a\\nb\"\n":                   `database.name: "a\nb" is not a database name`,
		"profile: oscar\n---\nfirewall: {enable: false}\n": ":3: a second YAML document (after ---); emrkit reads one",
	} {
		_, err := Load(writeConfig(t, in), true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: got %v, want %q", in, err, want)
			continue
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > 400 {
			t.Errorf("%.40q: not one bounded line (%d bytes): %q", in, len(msg), msg)
		}
	}
	if _, err := Load(writeConfig(t, "profile: oscar\n---\n"), true); err != nil {
		t.Errorf("a trailing ---: %v", err)
	}
}
