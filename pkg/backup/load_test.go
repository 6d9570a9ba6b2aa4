package backup

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
)

// sameTables fails unless databases a and b hold the same tables, each with the same
// definition and CHECKSUM TABLE, and returns how many there are.
func sameTables(t testing.TB, srv *mariadbtest.Server, a, b string) int {
	t.Helper()
	list := func(db string) []string {
		rows, err := srv.DB(t, db).Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", db)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		return names
	}
	ta, tb := list(a), list(b)
	if len(ta) == 0 || strings.Join(ta, ",") != strings.Join(tb, ",") {
		t.Fatalf("tables of %s %v, of %s %v", a, ta, b, tb)
	}
	for _, table := range ta {
		if sa, sb := srv.Checksum(t, a, table), srv.Checksum(t, b, table); sa != sb {
			t.Fatalf("table %s: CHECKSUM TABLE %s in %s, %s in %s", table, sa, a, sb, b)
		}
		if ca, cb := showCreate(t, srv, a, table), showCreate(t, srv, b, table); ca != cb {
			t.Fatalf("table %s is defined differently:\n%s\n%s", table, ca, cb)
		}
	}
	return len(ta)
}

func showCreate(t testing.TB, srv *mariadbtest.Server, db, table string) string {
	t.Helper()
	var name, def string
	if err := srv.DB(t, db).QueryRow("SHOW CREATE TABLE `"+table+"`").Scan(&name, &def); err != nil {
		t.Fatal(err)
	}
	return def
}

// emitted is every statement the scanner hands on when s is written n bytes at a time.
func emitted(t *testing.T, s string, n int) []string {
	t.Helper()
	var got []string
	sc := NewScanner(0)
	sc.emit = func(st Statement) error {
		got = append(got, fmt.Sprintf("%d %s|%s", st.Line, st.Table, st.Text))
		return nil
	}
	for i := 0; i < len(s); i += n {
		if _, err := sc.Write([]byte(s[i:min(i+n, len(s))])); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// The scanner hands on each statement whole, as the server must run it — with the versioned
// comment it opens with, without its delimiter, never a DELIMITER command — in any chunking.
func TestScannerEmitsStatementsWhole(t *testing.T) {
	dump := dumpOf("(1,'a;b'),(2,'--x')", "(3,'it''s')")
	want := emitted(t, dump, len(dump))
	for _, expect := range []string{
		"9 |/*!40101 SET NAMES utf8mb4 */",
		"28 demographic|/*!40000 ALTER TABLE `demographic` DISABLE KEYS */",
		"29 demographic|INSERT INTO `demographic` VALUES (1,'a;b'),(2,'--x')",
		"30 demographic|INSERT INTO `demographic` VALUES (3,'it''s')",
		"54 |CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\nBEGIN\n  SELECT 'USE x; CREATE DATABASE y';\n  SELECT 1;\nEND ",
		"61 |/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */",
	} {
		if !slices.Contains(want, expect) {
			t.Errorf("no statement %q in:\n%s", expect, strings.Join(want, "\n"))
		}
	}
	for _, st := range want {
		if strings.Contains(st, "DELIMITER") || strings.HasSuffix(st, ";") {
			t.Errorf("a client command or a delimiter was handed on: %q", st)
		}
	}
	for _, n := range []int{1, 2, 3, 7, 64} {
		if got := emitted(t, dump, n); !slices.Equal(got, want) {
			t.Errorf("in writes of %d bytes:\n%s\nwant\n%s", n, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestStatementVerb(t *testing.T) {
	for text, want := range map[string]string{
		"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n--\n/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */": "SET",
		"\n--\n-- Dumping data for table `t`\n--\nINSERT INTO `t` VALUES (1)":                                                              "INSERT INTO",
		"/*!40000 ALTER TABLE `t` DISABLE KEYS */":                                                                                         "ALTER TABLE",
		"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER t":                                                       "CREATE DEFINER",
		"lock tables `t` WRITE":                    "LOCK TABLES",
		"/* a comment */ # another\nUNLOCK TABLES": "UNLOCK TABLES",
		"/*!999999 SET x=1 */":                     "",
		"(1,2)":                                    "",
	} {
		if got := statementVerb([]byte(text), 101119); got != want {
			t.Errorf("statementVerb(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestInsertTable(t *testing.T) {
	for text, want := range map[string]string{
		"INSERT INTO `demographic` VALUES (1)": "demographic",
		"INSERT INTO `a``b` VALUES (1)":        "a`b",
		"INSERT INTO `` VALUES (1)":            "",
		"INSERT INTO `unended VALUES (1)":      "",
		"insert into t values (1)":             "",
	} {
		if got, _ := insertTable([]byte(text)); got != want {
			t.Errorf("insertTable(%q) = %q, want %q", text, got, want)
		}
	}
}

// A parallel restore leaves what `mariadb DB < dump` leaves: the same tables, definitions and
// rows (CHECKSUM TABLE, and a dump of each copy, which lists a table without a primary key in
// the order its rows were loaded), and the same routines, triggers, views and events.
func TestRestoreEqualsThePlainClients(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_par")
	db := srv.DB(t, "oscar_par")
	oscarfixture.Create(t, db, false)
	demofixture.Create(t, db, 30_000, 5) // several INSERT statements
	for _, q := range []string{
		"CREATE TABLE audit_nokey (at INT, what VARCHAR(200)) ENGINE=InnoDB",
		"INSERT INTO audit_nokey SELECT 30000 - demographic_no, CONCAT(last_name, REPEAT('x', 100)) FROM demographic ORDER BY demographic_no DESC",
		"CREATE TRIGGER t_audit BEFORE INSERT ON audit_nokey FOR EACH ROW SET NEW.what = 'trigger ran on restore'",
		"CREATE VIEW v_names AS SELECT demographic_no, first_name FROM demographic WHERE last_name LIKE '%;%' OR 1",
		"CREATE PROCEDURE p_count(OUT n INT) BEGIN SELECT COUNT(*) INTO n FROM demographic; END",
		"CREATE EVENT e_tick ON SCHEDULE EVERY 1 DAY DISABLE DO UPDATE security SET pin = pin WHERE 0",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	file, err := Write(ctx, Options{Database: cfg, Dir: t.TempDir(), Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	server := cfg
	server.Name = ""
	root := srv.DB(t, "")
	for _, q := range []string{"CREATE DATABASE plain_copy", "CREATE DATABASE parallel_copy"} {
		if _, err := root.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("sh", "-c", `gzip -dc "$2" | mariadb --defaults-extra-file="$1" plain_copy`, "sh", mariadbtest.OptionFile(t, server), file).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := Restore(ctx, RestoreOptions{Database: cfg, File: file, Target: "parallel_copy"}); err != nil {
		t.Fatal(err)
	}
	if n := sameTables(t, srv, "plain_copy", "parallel_copy"); n < 4 {
		t.Fatalf("only %d tables", n)
	}
	if a, b := srv.Dump(t, "plain_copy"), srv.Dump(t, "parallel_copy"); a != b {
		t.Fatalf("the copies' dumps differ:\n%s", lineDiff(a, b))
	}
	var objects [2]string
	for i, name := range []string{"plain_copy", "parallel_copy"} {
		err := root.QueryRow(`SELECT CONCAT_WS(',', (SELECT GROUP_CONCAT(ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?),
			(SELECT GROUP_CONCAT(TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?),
			(SELECT GROUP_CONCAT(TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?),
			(SELECT GROUP_CONCAT(EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?))`, name, name, name, name).Scan(&objects[i])
		if err != nil {
			t.Fatal(err)
		}
	}
	if objects[0] != "p_count,t_audit,v_names,e_tick" || objects[1] != objects[0] {
		t.Fatalf("routines, triggers, views, events: plain %q, parallel %q", objects[0], objects[1])
	}
}

// lineDiff is the first lines where a and b differ, for a readable failure.
func lineDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n- %.200s\n+ %.200s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines against %d", len(la), len(lb))
}
