// Package props edits Java .properties files (OSCAR's oscar.properties) the way an admin
// would by hand: one key at a time, keeping comments, order, spacing, line endings and the
// file's owner and mode. OSCAR reads the last occurrence of a key, so every read and edit
// here targets the last occurrence and leaves earlier, ignored ones alone.
package props

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
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
		for first := true; ; first = false {
			nl, width := lineBreak(s[end:])
			if nl < 0 {
				end = len(s)
				break
			}
			physical := s[end : end+nl]
			end += nl + width
			// A comment never continues (java.util.Properties): "# C:\dir\" ends there.
			if !continues(physical) || first && isComment(physical) {
				break
			}
		}
		d.lines = append(d.lines, parseLine(s[:end]))
		s = s[end:]
	}
	return d
}

// lineBreak finds the first line break in s and its width: "\n", "\r\n" or, as Java reads
// them, a lone "\r". i is -1 when there is none.
func lineBreak(s string) (i, width int) {
	i = strings.IndexAny(s, "\r\n")
	if i >= 0 && strings.HasPrefix(s[i:], "\r\n") {
		return i, 2
	}
	return i, 1
}

// continues reports whether a physical line ends in an odd number of backslashes.
func continues(s string) bool {
	n := len(s) - len(strings.TrimRight(s, "\\"))
	return n%2 == 1
}

// isComment reports whether a logical line starting with physical line s is a comment.
func isComment(s string) bool {
	s = strings.TrimLeft(s, " \t\f")
	return s != "" && (s[0] == '#' || s[0] == '!')
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
	parts := strings.Split(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(v), "\n")
	for k, p := range parts {
		if k > 0 {
			p = strings.TrimLeft(p, " \t\f")
		}
		if k < len(parts)-1 || continues(p) { // at the end of the file, Java drops it too
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
	raw := d.lines[len(d.lines)-1].raw
	return strings.HasSuffix(raw, "\n") || strings.HasSuffix(raw, "\r")
}

// Set makes value the one OSCAR sees for key: it rewrites the value of the last occurrence in
// place (keeping its indentation and separator), or appends KEY=value (for a new key any
// place will do). It returns the raw text of the line as it now reads.
func (d *Doc) Set(key, value string) string {
	if i := d.last(key); i >= 0 {
		l := d.lines[i]
		body := strings.TrimRight(l.raw, "\r\n")
		ending := l.raw[len(body):] // a continued value collapses to one physical line
		text := body[:l.valueAt]
		// Keep the separator, unless there is none ("KEY" alone) or it is blanks and the value
		// starts with '=' or ':', which would be read as the separator.
		sep := text[len(strings.TrimRight(text, " \t\f=:")):]
		if sep == "" || !strings.ContainsAny(sep, "=:") && strings.IndexAny(value, "=:") == 0 {
			text += "="
		}
		text += value
		d.lines[i] = parseLine(text + ending)
		return text
	}
	text := key + "=" + value
	at := len(d.lines)
	if at > 0 && continuesAtEnd(d.lines[at-1].raw) {
		at-- // before a last line that ends inside a continued value, which would swallow KEY
	} else if !d.endsWithNewline() {
		d.lines[at-1].raw += d.newline()
	}
	d.lines = slices.Insert(d.lines, at, parseLine(text+d.newline()))
	return text
}

// continuesAtEnd reports whether raw, the last line, ends inside a continued value: the
// next line of the file would be read as part of it.
func continuesAtEnd(raw string) bool {
	for _, br := range []string{"\r\n", "\n", "\r"} {
		if s, ok := strings.CutSuffix(raw, br); ok {
			raw = s
			break
		}
	}
	return !isComment(raw) && continues(raw[strings.LastIndexAny(raw, "\r\n")+1:])
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
