// Package progress owns how emrkit's long runs (a data migration over a million rows, the
// restore of a large backup) say how far they are: done of total, rate and ETA, in place on a
// terminal, a line every few seconds elsewhere.
package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/term"
)

// Meter reports a long run's progress: units done of total, rate and ETA. On a terminal it
// rewrites one line in place (carriage return) at most every TTYEvery; elsewhere (dpkg, cron,
// a log) it writes a plain line at most every PlainEvery. Finish writes the last line.
type Meter struct {
	w           io.Writer
	interactive bool
	label       string
	unit        Unit
	total, done int64
	start, last time.Time
	now         func() time.Time
}

// Throttles of the two output styles.
const (
	TTYEvery   = 200 * time.Millisecond
	PlainEvery = 10 * time.Second
)

// Unit is what a Meter counts and how a count is written.
type Unit struct {
	Name   string
	Format func(int64) string
}

// Rows counts rows (1,000,000 rows); Megabytes counts bytes, written in MB (734.0 MB).
var (
	Rows      = Unit{Name: "rows", Format: Group}
	Megabytes = Unit{Name: "MB", Format: func(n int64) string { return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) }}
)

// NewMeter starts measuring now; total -1 means not known yet. A nil w discards.
func NewMeter(w io.Writer, interactive bool, label string, unit Unit, total int64) *Meter {
	return newMeterAt(w, interactive, label, unit, total, time.Now)
}

func newMeterAt(w io.Writer, interactive bool, label string, unit Unit, total int64, now func() time.Time) *Meter {
	if w == nil {
		w = io.Discard
	}
	t := now()
	return &Meter{w: w, interactive: interactive, label: label, unit: unit, total: total, start: t, last: t, now: now}
}

// SetTotal sets the total once it is known (NewMeter takes -1 for "not yet").
func (m *Meter) SetTotal(n int64) { m.total = n }

// Add counts n more units done and reports when the throttle allows.
func (m *Meter) Add(n int64) {
	m.done += n
	t := m.now()
	every := PlainEvery
	if m.interactive {
		every = TTYEvery
	}
	if t.Sub(m.last) < every {
		return
	}
	m.last = t
	m.print(m.line(t, false), false)
}

// Finish writes the final line: units, elapsed time and mean rate.
func (m *Meter) Finish() {
	if m.total >= 0 {
		m.done = max(m.done, m.total)
	}
	m.print(m.line(m.now(), true), true)
}

// print rewrites the terminal line (erasing what is left of a longer one), ending it only on
// the final report; elsewhere every report is a line of its own.
func (m *Meter) print(s string, final bool) {
	switch {
	case m.interactive && final:
		fmt.Fprint(m.w, "\r"+s+"\x1b[K\n")
	case m.interactive:
		fmt.Fprint(m.w, "\r"+s+"\x1b[K")
	default:
		fmt.Fprintln(m.w, s)
	}
}

func (m *Meter) line(t time.Time, final bool) string {
	elapsed := t.Sub(m.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(m.done) / elapsed.Seconds()
	}
	f, unit := m.unit.Format, m.unit.Name
	s := fmt.Sprintf("%s: %s %s", m.label, f(m.done), unit)
	if m.total >= 0 {
		s = fmt.Sprintf("%s: %s/%s %s", m.label, f(m.done), f(m.total), unit)
	}
	if m.total > 0 {
		s += fmt.Sprintf(" (%d%%)", m.done*100/m.total)
	}
	if final {
		return s + fmt.Sprintf(" in %s, %s %s/s", elapsed.Round(100*time.Millisecond), f(int64(rate)), unit)
	}
	s += fmt.Sprintf(", %s %s/s", f(int64(rate)), unit)
	if rate > 0 && m.total > m.done {
		eta := time.Duration(float64(m.total-m.done) / rate * float64(time.Second))
		s += ", ETA " + eta.Round(time.Second).String()
	}
	return s
}

// Group writes n with thousands separators: 1,000,000.
func Group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := ""
	if n < 0 {
		neg, s = "-", s[1:]
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return neg + s
}

// IsTerminal reports whether w is a terminal, where a Meter rewrites its line in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
