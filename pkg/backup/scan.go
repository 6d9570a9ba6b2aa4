package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"
)

// maxTables bounds what the scanner remembers per table: a damaged or hostile file full of
// "-- Dumping data for table" lines must not grow it without end. OpenEMR has 264 tables,
// OSCAR about 500.
const maxTables = 100_000

// Scanner reads the SQL of a mariadb-dump as it streams past, in one pass and constant memory
// whatever the length of its lines, and learns what verify, restore and their error messages
// need without keeping any data:
//
//   - per table, a SHA-256 of its data statements (after "-- Dumping data for table `t`", the
//     lines "INSERT INTO `t` VALUES" and the rows, "(...),", one a line as mariadb-dump 10.11
//     writes them), which a restore test compares with a dump of the copy;
//   - which table each line belongs to, so that an error the mariadb client reports "at line
//     N" names the right table;
//   - the database the header names ("-- Host: ...  Database: NAME");
//   - whether it ends as every complete mariadb-dump does ("-- Dump completed");
//   - every statement's size, refused beyond Limit (the server's max_allowed_packet: a larger
//     one cannot be restored, and a decompression bomb is one endless line), and any
//     statement that would leave the target database (USE, CREATE/DROP DATABASE): a dump
//     taken with --databases would otherwise restore into the database it came from, not
//     into the target or the scratch database.
//
// The statements are delimited as the mariadb client does: quotes with backslash escapes,
// `--`, `#` and /* */ comments (/*! ... */ is code), and DELIMITER. Write returns a
// *DamagedError once the stream is refused.
type Scanner struct {
	// Limit is the largest statement accepted, in bytes (0: no limit).
	Limit int64
	// digestOnly skips the statement pass: for mariadb-dump's own output, read for digests.
	digestOnly bool
	// noDigests skips the digests: for a reader that only checks or loads the dump.
	noDigests bool

	// Line level.
	line      int64 // current line, from 1
	offset    int64 // bytes seen
	prefix    []byte
	hashing   hash.Hash // the current line is a data statement of this table's digest
	current   string    // table whose data the dump is in
	sums      map[string]hash.Hash
	sections  []section
	database  string
	completed bool // the last non-blank line is "-- Dump completed ..."
	blank     bool // the current line has only blanks so far
	lineLen   int64

	// Statement level, a pass of its own over the same bytes.
	sline      int64 // line of the statement pass, from 1
	soff       int64 // bytes the statement pass has seen before this write
	state      lexState
	escape     bool // a backslash inside a quote
	versioned  bool // inside /*! ... */, which the server runs as code
	digits     bool // skipping the version number after /*!
	commentLen int  // bytes into a /* */ comment
	prev       byte // the byte before, in a comment
	pending    byte // '/', '-' or '*' in code, until the next byte says what it is
	inStmt     bool
	stmtLen    int64 // bytes of the statement so far
	stmtLine   int64
	stmtOff    int64  // byte offset of the statement's first byte
	at         int    // index in the current write, for offsets
	head       []byte // the statement's first words, upper case
	headDone   bool
	delim      []byte
	matched    int // bytes of delim matched so far
	inDelim    bool
	delimLine  []byte
	special    [256]bool // see setSpecial

	err *DamagedError

	// emit, when set, receives every statement whole, as the server is to run it (see
	// Statement); text holds the current statement's bytes from earlier writes, keepFrom where
	// it starts in the current one (-1: not in this write).
	emit     func(Statement) error
	emitErr  error
	text     []byte
	textHint int // the capacity a new text starts with
	keepFrom int
	curr     []byte // the write being read
}

// Statement is one statement of a dump as the mariadb client would send it: without its
// delimiter, with the versioned comment it may open with ("/*!40101 SET NAMES utf8mb4 */"),
// and never a DELIMITER command, which is the client's own.
type Statement struct {
	Text []byte
	// Line is the line of the dump the statement starts on; Table the table its section is
	// about ("" before the first).
	Line  int64
	Table string
}

type lexState uint8

const (
	code lexState = iota
	single
	double
	backtick
	lineComment
	blockComment
)

// section says that from line on, the dump is about table (structure or data, "" for the
// routines and events).
type section struct {
	line  int64
	table string
}

// prefixLen is how much of a line is kept to recognise it: a "-- Dumping data for table `"
// comment with a 64-character name fits.
const prefixLen = 128

// NewScanner returns a scanner refusing statements over limit bytes (0: none).
func NewScanner(limit int64) *Scanner {
	s := &Scanner{Limit: limit, line: 1, sline: 1, sums: map[string]hash.Hash{}, blank: true, delim: []byte(";")}
	s.setSpecial()
	return s
}

// Write scans p; it fails once the dump is refused, with the same error from then on.
func (s *Scanner) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.emitErr != nil {
		return 0, s.emitErr
	}
	s.lines(p)
	if !s.digestOnly {
		s.statements(p)
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.emitErr != nil {
		return 0, s.emitErr
	}
	return len(p), nil
}

// Err is the reason the dump was refused, or nil.
func (s *Scanner) Err() error {
	if s.err == nil {
		return nil
	}
	return s.err
}

func (s *Scanner) lines(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i+1]
		}
		s.linePart(part)
		s.offset += int64(len(part))
		p = p[len(part):]
		if i >= 0 {
			s.endLine()
		}
	}
}

// linePart takes the next bytes of the current line (with its '\n' when it ends here).
func (s *Scanner) linePart(part []byte) {
	s.lineLen += int64(len(part))
	if s.blank && len(bytes.TrimSpace(part)) > 0 {
		s.blank = false
	}
	if s.hashing != nil {
		s.hashing.Write(part)
		return
	}
	if len(s.prefix) < prefixLen {
		n := min(prefixLen-len(s.prefix), len(part))
		s.prefix = append(s.prefix, part[:n]...)
		if s.current != "" && (len(s.prefix) >= len(insertInto) && bytes.HasPrefix(s.prefix, insertInto) || s.prefix[0] == '(') {
			s.hashing = s.sums[s.current]
			s.hashing.Write(s.prefix)
			s.hashing.Write(part[n:])
		}
	}
}

var (
	dumpingData   = []byte("-- Dumping data for table `")
	insertInto    = []byte("INSERT INTO `")
	dumpCompleted = []byte("-- Dump completed")
	hostHeader    = []byte("-- Host: ")
	// Comments that start the part of the dump about one table, view, or the routines.
	sectionHeads = [][]byte{[]byte("-- Table structure for table `"), dumpingData,
		[]byte("-- Temporary table structure for view `"), []byte("-- Final view structure for view `"),
		[]byte("-- Dumping routines for database '"), []byte("-- Dumping events for database '")}
)

func (s *Scanner) endLine() {
	l := s.prefix
	if !s.blank {
		s.completed = bytes.HasPrefix(l, dumpCompleted)
	}
	if s.line <= 10 && s.database == "" && bytes.HasPrefix(l, hostHeader) {
		if _, db, ok := bytes.Cut(l, []byte("Database: ")); ok {
			s.database = string(bytes.TrimSpace(db))
		}
	}
	for _, h := range sectionHeads {
		if !bytes.HasPrefix(l, h) {
			continue
		}
		quote := h[len(h)-1:]
		name, _, ok := bytes.Cut(l[len(h):], quote)
		if !ok {
			break
		}
		if len(s.sections) >= 2*maxTables {
			s.fail(s.line, s.offset, "it names more than %d tables", maxTables)
			break
		}
		table := string(name)
		if quote[0] == '\'' { // routines or events, of the database
			table = ""
		}
		s.sections = append(s.sections, section{line: s.line, table: table})
		s.current = ""
		if bytes.Equal(h, dumpingData) && !s.noDigests {
			s.current = table
			if s.sums[table] == nil {
				s.sums[table] = sha256.New()
			}
		}
		break
	}
	s.line++
	s.prefix = s.prefix[:0]
	s.hashing = nil
	s.blank = true
	s.lineLen = 0
}

func (s *Scanner) statements(p []byte) {
	s.curr, s.keepFrom = p, -1
	if s.inStmt {
		s.keepFrom = 0
	}
	for i := 0; i < len(p) && s.err == nil && s.emitErr == nil; i++ {
		c := p[i]
		s.at = i
		if s.inStmt {
			s.stmtLen++
			s.checkLimit()
		}
		switch s.state {
		case single, double, backtick:
			switch q := quoteOf(s.state); {
			case s.escape:
				s.escape = false
			case c == '\\' && s.state != backtick:
				s.escape = true
			case c == q:
				s.state = code
			default:
				// Data statements are mostly inside quotes: skip to the next byte that matters.
				if j := indexQuoteEnd(p[i+1:], q, s.state != backtick); j > 0 {
					s.stmtLen += int64(j)
					i += j
					s.checkLimit()
				}
			}
		case lineComment:
			if c == '\n' {
				s.state = code
			}
		case blockComment:
			s.commentByte(c)
		case code:
			s.codeByte(c)
			// Past a statement's first words, skip to the next byte that can matter.
			if s.state == code && s.headDone && s.pending == 0 && s.matched == 0 && !s.inDelim && !s.digits {
				j := i + 1
				for j < len(p) && !s.special[p[j]] {
					j++
				}
				if skipped := j - (i + 1); skipped > 0 {
					s.stmtLen += int64(skipped)
					i += skipped
					s.checkLimit()
				}
			}
		}
		if c == '\n' {
			s.sline++
		}
	}
	if s.emit != nil && s.inStmt && s.keepFrom >= 0 && s.err == nil {
		s.text = append(s.text, p[s.keepFrom:]...)
	}
	s.soff += int64(len(p))
}

func (s *Scanner) checkLimit() {
	if s.Limit > 0 && s.stmtLen > s.Limit {
		s.fail(s.stmtLine, s.stmtOff, "a statement is larger than the server's max_allowed_packet (%d bytes): the file is cut or corrupt, or comes from a server that allows larger statements (raise max_allowed_packet to restore it)", s.Limit)
	}
}

// indexQuoteEnd is how many bytes of b can be skipped inside a quote: up to, not including,
// the quote, a backslash (when it escapes) or a line break.
func indexQuoteEnd(b []byte, q byte, backslash bool) int {
	for j, c := range b {
		if c == q || c == '\n' || c == '\\' && backslash {
			return j
		}
	}
	return len(b)
}

// setSpecial marks the bytes the code fast path stops at: quotes, comment openers, a line
// break, and the delimiter's first byte.
func (s *Scanner) setSpecial() {
	s.special = [256]bool{}
	for _, c := range []byte("'\"`#-/*\n") {
		s.special[c] = true
	}
	s.special[s.delim[0]] = true
}

func quoteOf(st lexState) byte {
	switch st {
	case single:
		return '\''
	case double:
		return '"'
	}
	return '`'
}

// commentByte reads a /* */ comment; "/*!" and "/*M!" open code the server runs (a versioned
// comment), which is read as code so that nothing hides in it.
func (s *Scanner) commentByte(c byte) {
	s.commentLen++
	switch {
	case s.commentLen == 1 && c == '!', s.commentLen == 2 && s.prev == 'M' && c == '!':
		s.state, s.versioned, s.digits = code, true, true
		if !s.inStmt {
			// The statement starts at the comment's opener, which the server needs to read
			// the rest as code.
			s.begin()
			opener := "/*!"
			if s.commentLen == 2 {
				opener = "/*M!"
			}
			s.text = append(s.text[:0], opener...)
			s.keepFrom = s.at + 1
		}
	case s.prev == '*' && c == '/':
		s.state = code
		c = 0 // "*/*" opens no new comment
	}
	s.prev = c
}

func (s *Scanner) codeByte(c byte) {
	if s.inDelim {
		if c == '\n' {
			s.setDelimiter()
		} else if len(s.delimLine) < 32 {
			s.delimLine = append(s.delimLine, c)
		}
		return
	}
	if s.digits {
		if c >= '0' && c <= '9' {
			return
		}
		s.digits = false
	}
	pending := s.pending
	s.pending = 0
	switch {
	case pending == '/' && c == '*':
		s.state, s.commentLen, s.prev = blockComment, 0, 0
		return
	case pending == '-' && c == '-':
		// mariadb-dump always writes "-- " with a blank; the client needs one too.
		s.state = lineComment
		return
	case pending == '*' && c == '/' && s.versioned:
		s.versioned = false
		return
	case pending != 0:
		s.word(pending)
	}
	if c == '/' || c == '-' || c == '*' && s.versioned {
		s.pending = c // a comment opener, the end of a versioned comment, or code
		return
	}
	// The delimiter ends the statement wherever it stands in code.
	if c == s.delim[s.matched] {
		s.matched++
		if s.matched == len(s.delim) {
			s.matched = 0
			s.endStatement()
		}
		return
	}
	s.matched = 0
	if c == s.delim[0] {
		s.matched = 1
		return
	}
	switch c {
	case '\'':
		s.quote(single)
	case '"':
		s.quote(double)
	case '`':
		s.quote(backtick)
	case '#':
		s.state = lineComment
	case ' ', '\t', '\r', '\n':
		// A head ended by another byte ("DELIMITER0") is no command, and the fast path may
		// have skipped this blank: read it the same either way.
		if s.headDone {
			break
		}
		if len(s.head) > 0 && s.head[len(s.head)-1] != ' ' {
			s.head = append(s.head, ' ')
		}
		if string(s.head) == "DELIMITER " && c != '\n' {
			s.inDelim, s.delimLine = true, s.delimLine[:0]
		}
	default:
		s.word(c)
	}
}

func (s *Scanner) quote(st lexState) {
	s.begin()
	s.headDone = true
	s.state = st
}

// word takes a byte of code other than a blank, quote or comment: the statement's first words
// are kept, upper case, to recognise it.
func (s *Scanner) word(c byte) {
	s.begin()
	if s.headDone {
		return
	}
	if c >= 'a' && c <= 'z' {
		c -= 'a' - 'A'
	}
	if (c >= 'A' && c <= 'Z' || c == '_') && len(s.head) < 48 {
		s.head = append(s.head, c)
		return
	}
	s.headDone = true
}

// begin marks the first byte of a statement.
func (s *Scanner) begin() {
	if !s.inStmt {
		s.inStmt, s.stmtLen, s.stmtLine, s.stmtOff = true, 1, s.sline, s.soff+int64(s.at)
		if s.text == nil && s.emit != nil {
			// The receiver kept the last one: a new buffer, as large as that was, spares growing
			// this one copy by copy (a dump's INSERTs are much of a size).
			s.text = make([]byte, 0, s.textHint)
		}
		s.text, s.keepFrom = s.text[:0], s.at
	}
}

// setDelimiter ends a DELIMITER command, whose line is the new delimiter.
func (s *Scanner) setDelimiter() {
	d := bytes.TrimSpace(s.delimLine)
	if len(d) == 0 || len(d) > 16 || bytes.ContainsAny(d, "'\"`\\") {
		s.fail(s.stmtLine, s.stmtOff, "a DELIMITER command without a usable delimiter")
		return
	}
	s.delim = append(s.delim[:0], d...)
	s.setSpecial()
	s.inDelim, s.matched = false, 0
	s.reset()
}

func (s *Scanner) endStatement() {
	s.checkHead()
	if s.emit != nil && s.inStmt && s.err == nil {
		text := append(s.text, s.curr[s.keepFrom:s.at+1]...)
		text = text[:len(text)-len(s.delim)]
		s.emitErr = s.emit(Statement{Text: text, Line: s.stmtLine, Table: s.TableAt(s.stmtLine)})
		s.text = nil // the receiver keeps it
		s.textHint = min(len(text)+len(text)/8, 16<<20)
	}
	s.reset()
}

func (s *Scanner) reset() {
	s.inStmt, s.stmtLen, s.head, s.headDone, s.versioned = false, 0, s.head[:0], false, false
	s.keepFrom = -1
	if s.text != nil {
		s.text = s.text[:0]
	}
}

// leaving are the statements that would leave the target database.
var leaving = []string{"USE", "CREATE DATABASE", "CREATE SCHEMA", "DROP DATABASE", "DROP SCHEMA", "CONNECT"}

func (s *Scanner) checkHead() {
	head := strings.TrimSpace(string(s.head))
	for _, l := range leaving {
		if head == l || strings.HasPrefix(head, l+" ") {
			s.fail(s.stmtLine, s.stmtOff, "it switches to another database (%s): it was taken with --databases or --all-databases; emrkit restores the dump of one database, as emrkit backup or mariadb-dump DATABASE write it", l)
			return
		}
	}
}

func (s *Scanner) fail(line, offset int64, format string, args ...any) {
	if s.err == nil {
		s.err = &DamagedError{Reason: fmt.Sprintf(format, args...), Line: line, Offset: offset, Table: s.TableAt(line)}
	}
}

// TableAt is the table (or view, or routines section) line belongs to, "" before the first.
func (s *Scanner) TableAt(line int64) string {
	i, found := slices.BinarySearchFunc(s.sections, line, func(sec section, l int64) int {
		switch {
		case sec.line < l:
			return -1
		case sec.line > l:
			return 1
		}
		return 0
	})
	if found {
		return s.sections[i].table
	}
	if i == 0 {
		return ""
	}
	return s.sections[i-1].table
}

// newDigester returns a scanner that only digests: for a dump emrkit has just taken itself.
func newDigester() *Scanner {
	s := NewScanner(0)
	s.digestOnly = true
	return s
}

// Database is the database the dump's header names, "" when it names none.
func (s *Scanner) Database() string { return s.database }

// Completed reports whether the dump so far ends with mariadb-dump's last line.
func (s *Scanner) Completed() bool { return s.completed }

// Digests returns each table's data digest, hex.
func (s *Scanner) Digests() map[string]string {
	out := map[string]string{}
	for t, h := range s.sums {
		out[t] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// Position is the current line and byte offset, for errors about where reading stopped.
func (s *Scanner) Position() (line, offset int64) { return s.line, s.offset }
