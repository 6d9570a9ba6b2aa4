package redact

import (
	"strings"
	"testing"
)

// FuzzSQLText: a value quoted in a MariaDB message never survives, whatever it holds (but a
// quote, which would end it), and the result is one line of at most MaxSQLLen bytes.
func FuzzSQLText(f *testing.F) {
	f.Add("Duplicate entry '", "Smith-1961", "' for key 'PRIMARY'")
	f.Add("You have an error in your SQL syntax; check the manual near '", "Jane','Doe", "' at line 1")
	f.Add("Incorrect integer value: '", "O Brien", "' for column `year_of_birth` at row 1")
	f.Add("Data too long for column '", "first_name", "' at row 3")
	f.Fuzz(func(t *testing.T, before, value, after string) {
		out := SQLText(before + value + after)
		if len(out) > MaxSQLLen || strings.ContainsAny(out, "\n\r\x00") {
			t.Fatalf("%d bytes: %q", len(out), out)
		}
		quoted := strings.HasSuffix(before, "'") && strings.HasPrefix(after, "'") && (len(after) == 1 || !isLetter(after[1]))
		if !quoted || strings.ContainsAny(value, "'\"`\n\r\t") || len(value) < 4 || strings.Contains(before+after[1:], value) {
			return
		}
		if nameLike.MatchString(value) && nameBefore[wordBefore(strings.TrimSuffix(before, "'"))] {
			return // a name: kept on purpose
		}
		if len(before) > 1 && isLetter(before[len(before)-2]) && isLetter(value[0]) {
			return // the quote stands inside a word (doesn't): the documented apostrophe
		}
		if strings.Contains(before[:len(before)-1], "'") || strings.Contains(before, "\"") || strings.Contains(before, "`") {
			return // an earlier quote may pair with this one
		}
		if strings.Contains(out, value) {
			t.Fatalf("the value %q survived: %q", value, out)
		}
	})
}
