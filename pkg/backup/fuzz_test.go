package backup

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// FuzzScanner: whatever a backup file holds, the scanner neither panics nor remembers more
// than its bounds, and reads the same in any chunking: one write or writes of n bytes give the
// same digests, header, completeness, and the same refusal.
func FuzzScanner(f *testing.F) {
	f.Add([]byte(dumpOf(`(1,'Jane'),(2,'O\'Brien')`)), uint16(7), int64(0))
	f.Add([]byte(dumpOf(`(1,'`+string(bytes.Repeat([]byte("x"), 300))+`')`)), uint16(64), int64(256))
	f.Add([]byte("DELIMITER ;;\nCREATE PROCEDURE p() BEGIN SELECT ';'; END ;;\nDELIMITER ;\nUSE x;\n"), uint16(1), int64(0))
	f.Add([]byte("/*!40000 DROP DATABASE x*/;\n-- Dump completed\n"), uint16(3), int64(10))
	f.Add([]byte("'unterminated \\' \" ` /* -- #\n"), uint16(2), int64(5))
	f.Fuzz(func(t *testing.T, dump []byte, n uint16, limit int64) {
		if limit < 0 {
			limit = -limit
		}
		one, errOne := scanBytes(dump, max(len(dump), 1), limit)
		many, errMany := scanBytes(dump, int(n%512)+1, limit)
		var d1, d2 *DamagedError
		if errors.As(errOne, &d1) != errors.As(errMany, &d2) || (d1 != nil && *d1 != *d2) {
			t.Fatalf("one write: %v; writes of %d: %v", errOne, int(n%512)+1, errMany)
		}
		if errOne != nil {
			return
		}
		if !maps.Equal(one.Digests(), many.Digests()) || one.Completed() != many.Completed() || one.Database() != many.Database() {
			t.Fatalf("chunking changed what was read: %v/%v %v/%v %q/%q", one.Digests(), many.Digests(), one.Completed(), many.Completed(), one.Database(), many.Database())
		}
		for _, s := range []*Scanner{one, many} {
			if len(s.prefix) > prefixLen || len(s.head) > 48 || len(s.delimLine) > 32 || len(s.sections) > 2*maxTables || len(s.delim) > 16 {
				t.Fatalf("the scanner grew past its bounds: prefix %d head %d delimiter line %d sections %d", len(s.prefix), len(s.head), len(s.delimLine), len(s.sections))
			}
			if limit > 0 && s.stmtLen > limit {
				t.Fatalf("a statement of %d bytes passed a limit of %d", s.stmtLen, limit)
			}
		}
	})
}

// FuzzSniff: the first bytes of any file are gzip, OpenPGP or a damaged backup, never a panic.
func FuzzSniff(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Add([]byte("-----BEGIN PGP MESSAGE-----\n"))
	f.Add([]byte{0xc1, 0x0c})
	f.Add([]byte{0x85, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, head []byte) {
		format, err := sniff("f", head)
		if err == nil && format != Gzip && format != OpenPGP {
			t.Fatalf("format %d", format)
		}
		var d *DamagedError
		if err != nil && !errors.As(err, &d) {
			t.Fatalf("%T %v", err, err)
		}
	})
}

// FuzzLoadError: whatever the server answered a statement, the error is one bounded line.
func FuzzLoadError(f *testing.F) {
	f.Add("You have an error in your SQL syntax; check the manual near 'Jane','Doe' at line 3\n")
	f.Add("Duplicate entry 'Smith' for key 'PRIMARY'")
	f.Add("Unknown command '\\x'.")
	f.Fuzz(func(t *testing.T, message string) {
		server := &mysql.MySQLError{Number: 1064, SQLState: [5]byte{'4', '2', '0', '0', '0'}, Message: message}
		msg := statementError(server, Statement{Line: 52, Table: "demographic"}).Error()
		if len(msg) > 640 || bytes.ContainsAny([]byte(msg), "\n\r") {
			t.Fatalf("%d bytes: %q", len(msg), msg)
		}
	})
}
