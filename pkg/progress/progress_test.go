package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMeter(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }

	// Not a terminal: a plain line at most every PlainEvery, and the final report.
	var plain bytes.Buffer
	m := newMeterAt(&plain, false, "middle-names", Rows, -1, now)
	clock = clock.Add(time.Second)
	m.Add(100_000) // throttled
	m.SetTotal(1_000_000)
	clock = clock.Add(PlainEvery)
	m.Add(100_000)
	clock = clock.Add(4 * time.Second)
	m.Add(700_000) // throttled
	clock = clock.Add(5 * time.Second)
	m.Finish()
	want := "middle-names: 200,000/1,000,000 rows (20%), 18,181 rows/s, ETA 44s\n" +
		"middle-names: 1,000,000/1,000,000 rows (100%) in 20s, 50,000 rows/s\n"
	if plain.String() != want {
		t.Fatalf("plain output:\n%q\nwant\n%q", plain.String(), want)
	}

	// A terminal: one line rewritten in place, erased to its end, ended by the final report.
	var tty bytes.Buffer
	m = newMeterAt(&tty, true, "undo roster-enrolled-to", Rows, 3000, now)
	for range 3 {
		clock = clock.Add(TTYEvery)
		m.Add(1000)
	}
	m.Finish()
	lines := strings.Split(tty.String(), "\r")
	if len(lines) != 5 || !strings.HasSuffix(tty.String(), "\x1b[K\n") || strings.Count(tty.String(), "\n") != 1 {
		t.Fatalf("terminal output: %q", tty.String())
	}
	if lines[2] != "undo roster-enrolled-to: 2,000/3,000 rows (66%), 5,000 rows/s, ETA 0s\x1b[K" {
		t.Fatalf("terminal line: %q", lines[2])
	}

	// No total known: rows done only.
	var none bytes.Buffer
	m = newMeterAt(&none, false, "x", Rows, -1, now)
	clock = clock.Add(PlainEvery)
	m.Add(5)
	if got := none.String(); got != "x: 5 rows, 0 rows/s\n" {
		t.Fatalf("without a total: %q", got)
	}
	if Group(-1234567) != "-1,234,567" || Group(999) != "999" {
		t.Fatal("group")
	}

	// Bytes, in MB.
	var mb bytes.Buffer
	m = newMeterAt(&mb, false, "restore", Megabytes, 734_000_000, now)
	clock = clock.Add(PlainEvery)
	m.Add(120_300_000)
	if got := mb.String(); got != "restore: 120.3/734.0 MB (16%), 12.0 MB/s, ETA 51s\n" {
		t.Fatalf("megabytes: %q", got)
	}
}
