// Package redact owns making text from outside emrkit safe to print, record or log: one line,
// a bounded length, and no value a database server or client quoted out of the data it was
// given. MariaDB quotes the offending value in its messages ("Duplicate entry 'Smith-1961'
// for key ...", "... near 'Jane','Doe',..."), and in a clinic those values are patient
// records; emrkit's own output (stderr, the journal, the restore-test record, doctor) must
// never carry them, so every such message passes through here where it enters emrkit.
package redact

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
)

// MaxLen bounds a message: a few hundred bytes say what failed, where, and the fix; more is
// data. MaxSQLLen bounds the part a database server or client wrote, inside such a message.
const (
	MaxLen    = 640
	MaxSQLLen = 300
)

// Withheld stands in for a value taken out of a message.
const Withheld = "[value withheld]"

// nameBefore are the words after which MariaDB quotes a name (of a column, key, table ...)
// rather than a value; only those quoted words are kept, and only when they look like a name.
var nameBefore = map[string]bool{
	"column": true, "key": true, "table": true, "database": true, "index": true, "field": true,
	"constraint": true, "procedure": true, "function": true, "trigger": true, "event": true,
	"schema": true, "variable": true, "user": true, "view": true, "sequence": true, "engine": true,
	"collation": true, "charset": true, "set": true, "command": true,
}

var nameLike = regexp.MustCompile(`^[A-Za-z0-9_$.@%-]{1,64}$`)

// near is MariaDB's parse-error tail, "near '<the rest of the statement>' at line N": the
// rest of the statement is printed raw (its own quotes unescaped), so all of it goes.
var near = regexp.MustCompile(`(?s)\bnear '.*?(' at line \d+)?$`)

// SQLText returns msg — a message of a MariaDB server or client — with every quoted value
// replaced by Withheld, on one line and at most MaxLen bytes. A quoted token stays only
// when it follows one of nameBefore's words (or is `backquoted`) and looks like a name; an
// unterminated quote withholds the rest of the message. A quote inside a word, between two
// letters (doesn't), opens nothing, and one followed by a letter closes nothing (O'Brien).
func SQLText(msg string) string {
	msg = near.ReplaceAllStringFunc(msg, func(m string) string {
		_, line, _ := strings.Cut(m, "' at line ")
		if line != "" && strings.HasSuffix(m, line) && isDigits(line) {
			return "near " + Withheld + " at line " + line
		}
		return "near " + Withheld
	})
	var b strings.Builder
	for i := 0; i < len(msg); {
		c := msg[i]
		if c != '\'' && c != '"' && c != '`' || inWord(msg, i) {
			b.WriteByte(c)
			i++
			continue
		}
		end := closing(msg, i)
		if end < 0 {
			b.WriteString(Withheld)
			break
		}
		token := msg[i+1 : end]
		if nameLike.MatchString(token) && (c == '`' || nameBefore[wordBefore(msg[:i])]) {
			b.WriteString(msg[i : end+1])
		} else {
			b.WriteString(Withheld)
		}
		i = end + 1
	}
	return cut(Line(b.String()), MaxSQLLen)
}

// inWord reports whether the quote at i stands between two letters (doesn't, O'Brien), where
// it opens nothing. One after a letter but before anything else ("A'0000'") still opens.
func inWord(msg string, i int) bool {
	return i > 0 && isLetter(msg[i-1]) && i+1 < len(msg) && isLetter(msg[i+1])
}

// closing is the index of the quote closing the one at open, or -1.
func closing(msg string, open int) int {
	q := msg[open]
	for j := open + 1; j < len(msg); j++ {
		if msg[j] == q && (j+1 == len(msg) || !isLetter(msg[j+1])) {
			return j
		}
	}
	return -1
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// wordBefore is the last word of s, lower-cased ("for key " gives "key").
func wordBefore(s string) string {
	s = strings.TrimRight(s, " ")
	i := strings.LastIndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') })
	return strings.ToLower(s[i+1:])
}

// Line folds s onto one line (runs of blanks, line breaks and control characters become one
// space) and cuts it to MaxLen bytes on a rune boundary, marking the cut.
func Line(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == ' ' || r == utf8.RuneError {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if b.Len() > MaxLen {
			break
		}
	}
	return cut(b.String(), MaxLen)
}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// Error is err's message made safe: the text of a MariaDB server error in its chain
// (go-sql-driver's *mysql.MySQLError) has its values withheld, the rest is kept, and the whole
// is one bounded line.
func Error(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok && me.Message != "" {
		msg = strings.ReplaceAll(msg, me.Message, SQLText(me.Message))
	}
	return Line(msg)
}
