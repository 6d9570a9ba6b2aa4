package migrate

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// Meter reports a long run's progress: rows done of total, rate and ETA. On a terminal it
// rewrites one line in place (carriage return) at most every TTYEvery; elsewhere (dpkg, cron,
// a log) it writes a plain line at most every PlainEvery. Finish writes the last line.
type Meter struct {
	w           io.Writer
	interactive bool
	label       string
	total, done int64
	start, last time.Time
	now         func() time.Time
}

// Throttles of the two output styles.
const (
	TTYEvery   = 200 * time.Millisecond
	PlainEvery = 10 * time.Second
)

// NewMeter starts measuring now; total -1 means not known yet. A nil w discards.
func NewMeter(w io.Writer, interactive bool, label string, total int64) *Meter {
	return newMeterAt(w, interactive, label, total, time.Now)
}

func newMeterAt(w io.Writer, interactive bool, label string, total int64, now func() time.Time) *Meter {
	if w == nil {
		w = io.Discard
	}
	t := now()
	return &Meter{w: w, interactive: interactive, label: label, total: total, start: t, last: t, now: now}
}

// SetTotal sets the total once it is known (NewMeter takes -1 for "not yet").
func (m *Meter) SetTotal(n int64) { m.total = n }

// Add counts n more rows done and reports when the throttle allows.
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

// Finish writes the final line: rows, elapsed time and mean rate.
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
	s := fmt.Sprintf("%s: %s rows", m.label, Group(m.done))
	if m.total >= 0 {
		s = fmt.Sprintf("%s: %s/%s rows", m.label, Group(m.done), Group(m.total))
	}
	if m.total > 0 {
		s += fmt.Sprintf(" (%d%%)", m.done*100/m.total)
	}
	if final {
		return s + fmt.Sprintf(" in %s, %s rows/s", elapsed.Round(100*time.Millisecond), Group(int64(rate)))
	}
	s += fmt.Sprintf(", %s rows/s", Group(int64(rate)))
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
