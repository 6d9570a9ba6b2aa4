package redact

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestSQLTextWithholdsValuesKeepsNames(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Duplicate entry 'MARKER-Smith' for key 'PRIMARY'", "Duplicate entry [value withheld] for key 'PRIMARY'"},
		{"You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'MARKER','Jane'),(2,'x' at line 1",
			"You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near [value withheld] at line 1"},
		{"Data too long for column 'first_name' at row 3", "Data too long for column 'first_name' at row 3"},
		{"Incorrect integer value: 'MARKER' for column `oscar`.`demographic`.`year_of_birth` at row 1",
			"Incorrect integer value: [value withheld] for column `oscar`.`demographic`.`year_of_birth` at row 1"},
		{"Unknown column 'MARKER Jane' in 'field list'", "Unknown column [value withheld] in [value withheld]"},
		{"near 'MARKER unterminated", "near [value withheld]"},
		{"Table 'oscar_15.security' doesn't exist", "Table 'oscar_15.security' doesn't exist"},
	} {
		if got := SQLText(c.in); got != c.want {
			t.Errorf("SQLText(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestLineBoundsAndFolds(t *testing.T) {
	long := strings.Repeat("é", 1000) + "\n" + strings.Repeat("x", 1000)
	got := Line(long)
	if len(got) > MaxLen || strings.ContainsAny(got, "\n\r") || !strings.HasSuffix(got, "…") {
		t.Fatalf("Line: %d bytes, %q...", len(got), got[:20])
	}
	if got := Line("a\n\n  b\tc\x00d"); got != "a b c d" {
		t.Fatalf("Line folded to %q", got)
	}
}

func TestErrorRedactsTheServerErrorInAChain(t *testing.T) {
	me := &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'MARKER' for key 'user_name'"}
	err := fmt.Errorf("enrol oscardoc: %w", fmt.Errorf("update security: %w", me))
	got := Error(err)
	if strings.Contains(got, "MARKER") || !strings.Contains(got, "enrol oscardoc: update security: Error 1062") || !strings.Contains(got, "'user_name'") {
		t.Fatalf("Error: %q", got)
	}
}
