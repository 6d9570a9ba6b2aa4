// Package props edits Java .properties files (OSCAR's oscar.properties) the way an admin
// would by hand: one key at a time, keeping comments, order, spacing, line endings and the
// file's owner and mode. OSCAR reads the last occurrence of a key, so every read and edit
// here targets the last occurrence and leaves earlier, ignored ones alone.
package props

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

var validKey = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

// CheckKey rejects keys that would need escaping; OSCAR's keys never do.
func CheckKey(key string) error {
	if !validKey.MatchString(key) {
		return fmt.Errorf("property key %q: use letters, digits, '.', '_' or '-'", key)
	}
	return nil
}

// CheckValue rejects values that a properties file cannot hold verbatim.
func CheckValue(value string) error {
	if strings.ContainsAny(value, "\\\r\n") || strings.TrimLeft(value, " \t\f") != value {
		return fmt.Errorf("property value %q: no backslashes, line breaks or leading blanks", value)
	}
	return nil
}

// line is one logical line: its raw bytes (with continuation lines and the final newline).
type line struct {
	raw   string
	key   string // "" for comments and blank lines
	value string // raw value text, continuation lines joined
	// valueAt is where the value starts in raw, so an edit keeps indentation and separator.
	valueAt int
}

// Doc is a parsed properties file that renders back to its exact bytes.
type Doc struct {
	lines []line
	crlf  bool
}

// Parse splits data into logical lines. Parsing never fails: anything that is not a key is
// kept as an opaque line.
func Parse(data []byte) *Doc {
	d := &Doc{crlf: bytes.Contains(data, []byte("\r\n"))}
	s := string(data)
	for len(s) > 0 {
		end := 0
		for {
			nl := strings.IndexByte(s[end:], '\n')
			if nl < 0 {
				end = len(s)
				break
			}
			physical := strings.TrimRight(s[end:end+nl], "\r")
			end += nl + 1
			if !continues(physical) {
				break
			}
		}
		d.lines = append(d.lines, parseLine(s[:end]))
		s = s[end:]
	}
	return d
}

// continues reports whether a physical line ends in an odd number of backslashes.
func continues(s string) bool {
	n := len(s) - len(strings.TrimRight(s, "\\"))
	return n%2 == 1
}

func parseLine(raw string) line {
	l := line{raw: raw}
	body := strings.TrimRight(raw, "\r\n")
	i := len(body) - len(strings.TrimLeft(body, " \t\f"))
	if i == len(body) || body[i] == '#' || body[i] == '!' {
		return l
	}
	start := i
	for i < len(body) {
		c := body[i]
		if c == '\\' {
			i += 2
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			break
		}
		i++
	}
	if i > len(body) {
		i = len(body)
	}
	l.key = body[start:i]
	for i < len(body) && strings.IndexByte(" \t\f", body[i]) >= 0 {
		i++
	}
	if i < len(body) && (body[i] == '=' || body[i] == ':') {
		i++
		for i < len(body) && strings.IndexByte(" \t\f", body[i]) >= 0 {
			i++
		}
	}
	l.valueAt = i
	l.value = joinContinuations(body[i:])
	return l
}

func joinContinuations(v string) string {
	parts := strings.Split(v, "\n")
	for k := range parts {
		p := strings.TrimRight(parts[k], "\r")
		if k > 0 {
			p = strings.TrimLeft(p, " \t\f")
		}
		if k < len(parts)-1 {
			p = strings.TrimSuffix(p, "\\")
		}
		parts[k] = p
	}
	return strings.Join(parts, "")
}

// Bytes renders the document.
func (d *Doc) Bytes() []byte {
	var b strings.Builder
	for _, l := range d.lines {
		b.WriteString(l.raw)
	}
	return []byte(b.String())
}

func (d *Doc) last(key string) int {
	for i := len(d.lines) - 1; i >= 0; i-- {
		if d.lines[i].key == key {
			return i
		}
	}
	return -1
}

// Get returns the value OSCAR sees for key (its last occurrence).
func (d *Doc) Get(key string) (string, bool) {
	i := d.last(key)
	if i < 0 {
		return "", false
	}
	return d.lines[i].value, true
}

// Line returns the raw text of key's last occurrence, without its line ending.
func (d *Doc) Line(key string) (string, bool) {
	i := d.last(key)
	if i < 0 {
		return "", false
	}
	return strings.TrimRight(d.lines[i].raw, "\r\n"), true
}

func (d *Doc) newline() string {
	if d.crlf {
		return "\r\n"
	}
	return "\n"
}

// endsWithNewline reports whether the rendered document ends in a line break (or is empty).
func (d *Doc) endsWithNewline() bool {
	if len(d.lines) == 0 {
		return true
	}
	return strings.HasSuffix(d.lines[len(d.lines)-1].raw, "\n")
}

// Set makes value the one OSCAR sees for key: it rewrites the value of the last occurrence in
// place (keeping its indentation and separator), or appends KEY=value. It returns the raw text
// of the line as it now reads.
func (d *Doc) Set(key, value string) string {
	if i := d.last(key); i >= 0 {
		l := d.lines[i]
		body := strings.TrimRight(l.raw, "\r\n")
		ending := l.raw[len(body):]
		if strings.Contains(body, "\n") { // a continued value collapses to one physical line
			ending = d.newline()
		}
		text := body[:l.valueAt] + value
		d.lines[i] = parseLine(text + ending)
		return text
	}
	if !d.endsWithNewline() {
		d.lines[len(d.lines)-1].raw += d.newline()
	}
	text := key + "=" + value
	d.lines = append(d.lines, parseLine(text+d.newline()))
	return text
}

// Replace swaps the raw text of key's last occurrence for text (a whole line, no ending).
func (d *Doc) Replace(key, text string) {
	i := d.last(key)
	if i < 0 {
		return
	}
	l := d.lines[i]
	ending := l.raw[len(strings.TrimRight(l.raw, "\r\n")):]
	d.lines[i] = parseLine(text + ending)
}

// Remove deletes key's last occurrence. With dropFinalNewline it also removes the line break
// that Set added to a file that did not end in one.
func (d *Doc) Remove(key string, dropFinalNewline bool) {
	i := d.last(key)
	if i < 0 {
		return
	}
	d.lines = append(d.lines[:i], d.lines[i+1:]...)
	if dropFinalNewline && i == len(d.lines) && i > 0 {
		prev := &d.lines[i-1]
		prev.raw = strings.TrimSuffix(strings.TrimSuffix(prev.raw, "\n"), "\r")
	}
}
