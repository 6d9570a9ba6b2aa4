// Package demofixture fills an OSCAR-like `demographic` table with realistic patient rows for
// the data-migration tests and benchmarks (design section 8, "OSCAR 15 -> 19 data").
//
// The rows are what fifteen years of front-desk typing leave behind: single- and multi-word
// first names, middle names typed into first_name, leading, trailing and doubled spaces,
// middleNames NULL, empty, blank or set, roster statuses RO, TE, FS, NULL and empty (and a stray 'ro'),
// MRPs in provider_no (sometimes missing) and roster_enrolled_to filled in, empty or NULL.
//
// Generation is set-based and deterministic: one INSERT ... SELECT per chunk over MariaDB's
// built-in sequence tables (seq_1_to_N), every value derived from CRC32(seed, row, field). The
// same (rows, seed) gives byte-identical tables on any server, and a million rows take
// seconds, not the minutes a row-at-a-time loader would.
package demofixture

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
)

// Table is the table the fixture fills.
const Table = "demographic"

// CreateTable is OSCAR's demographic table, cut down to the columns a clinic fills in most
// and with OSCAR's types: the PK demographic_no, the name columns the middle-names migration
// reads, the roster columns the roster migration reads, and enough else (sex, birth date,
// health number, address) that a row looks and weighs like a real one. The (last_name,
// first_name) and hin indexes are what OSCAR searches by; they make name updates cost what
// they cost on a clinic's server.
const CreateTable = "CREATE TABLE `demographic` (" +
	"`demographic_no` int(10) NOT NULL AUTO_INCREMENT," +
	"`title` varchar(10) DEFAULT NULL," +
	"`last_name` varchar(30) NOT NULL DEFAULT ''," +
	"`first_name` varchar(30) NOT NULL DEFAULT ''," +
	"`middleNames` varchar(100) DEFAULT NULL," +
	"`address` varchar(60) DEFAULT NULL," +
	"`city` varchar(50) DEFAULT NULL," +
	"`province` varchar(20) DEFAULT NULL," +
	"`postal` varchar(9) DEFAULT NULL," +
	"`phone` varchar(20) DEFAULT NULL," +
	"`email` varchar(100) DEFAULT NULL," +
	"`year_of_birth` varchar(4) DEFAULT NULL," +
	"`month_of_birth` char(2) DEFAULT NULL," +
	"`date_of_birth` char(2) DEFAULT NULL," +
	"`hin` varchar(20) DEFAULT NULL," +
	"`ver` char(3) DEFAULT NULL," +
	"`hc_type` varchar(20) DEFAULT NULL," +
	"`sex` char(1) NOT NULL DEFAULT ''," +
	"`roster_status` varchar(20) DEFAULT NULL," +
	"`roster_date` date DEFAULT NULL," +
	"`roster_enrolled_to` varchar(20) DEFAULT NULL," +
	"`patient_status` varchar(20) DEFAULT NULL," +
	"`date_joined` date DEFAULT NULL," +
	"`chart_no` varchar(10) DEFAULT NULL," +
	"`provider_no` varchar(250) DEFAULT NULL," +
	"`lastUpdateUser` varchar(6) DEFAULT NULL," +
	"`lastUpdateDate` datetime DEFAULT NULL," +
	"PRIMARY KEY (`demographic_no`)," +
	"KEY `name` (`last_name`,`first_name`)," +
	"KEY `hin` (`hin`)" +
	") ENGINE=InnoDB"

// Name lists; every entry is at most 8 characters so the messiest first_name shape (three
// names, five extra blanks) still fits OSCAR's varchar(30). A few carry accents: the
// migrations must move bytes, not characters, faithfully.
var (
	firstNames = []string{"Mary", "John", "Anne", "James", "Jean", "Paul", "Marie", "Louise", "Sarah", "David",
		"Michael", "Linda", "Robert", "Susan", "Wei", "Priya", "Olivia", "Liam", "Noah", "Emma",
		"Zoé", "André", "Renée", "José", "Chloé", "Mohammed", "Fatima", "Aiden", "Grace", "Hannah",
		"Lucas", "Ava", "Ethan", "Mia", "Daniel", "Nora", "Owen", "Ruth", "Elijah", "Isabel"}
	middleNames = []string{"Ann", "Marie", "Lynn", "Louise", "Rose", "Joseph", "Lee", "Grace", "Jane", "Paul",
		"Claire", "Michael", "Elaine", "Thomas", "May", "Anne", "Ray", "Jo", "Élise", "Kay"}
	lastNames = []string{"Smith", "Tremblay", "Roy", "Gagnon", "Wong", "Singh", "Brown", "Martin", "Lee", "Wilson",
		"Taylor", "Côté", "Patel", "Nguyen", "O'Brien", "Campbell", "Anderson", "Chen", "Kim", "MacDonald",
		"Bouchard", "Gauthier", "Morin", "Lavoie", "Fortin", "Johnson", "Williams", "Jones", "Miller", "Davis"}
	providers = []string{"999998", "101", "102", "103", "104", "105", "106", "107", "108", "109", "110", "111"}
	cities    = []string{"Hamilton", "Toronto", "Ottawa", "Burlington", "Guelph", "Kingston", "London", "Sudbury"}
)

// elt is ELT(1 + h MOD len, list...): a deterministic pick from list.
func elt(h string, list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return fmt.Sprintf("ELT(1 + %s MOD %d, %s)", h, len(list), strings.Join(q, ", "))
}

// h is the row's hash for field: CRC32 of seed, row number and field name.
func h(seed int64, field string) string {
	return fmt.Sprintf("CRC32(CONCAT('%d-', seq, '-%s'))", seed, field)
}

// selectRows is the SELECT generating rows lo..hi (1-based, inclusive).
func selectRows(seed int64, lo, hi int) string {
	f1, f2, f3 := elt(h(seed, "f1"), firstNames), elt(h(seed, "f2"), firstNames), elt(h(seed, "f3"), middleNames)
	shape := h(seed, "shape") + " MOD 100"
	// first_name shapes, in percent: 50 one word, 17 two words, 6 three words, 5 one word
	// padded, 5 two words double-spaced, 3 leading blank, 3 messy (blanks everywhere),
	// 2 empty, 3 hyphenated (one word), 6 two words again (with another name pool).
	first := fmt.Sprintf("CASE WHEN %[1]s < 50 THEN %[2]s"+
		" WHEN %[1]s < 67 THEN CONCAT(%[2]s, ' ', %[3]s)"+
		" WHEN %[1]s < 73 THEN CONCAT(%[2]s, ' ', %[3]s, ' ', %[4]s)"+
		" WHEN %[1]s < 78 THEN CONCAT(' ', %[2]s, '  ')"+
		" WHEN %[1]s < 83 THEN CONCAT(%[2]s, '  ', %[3]s)"+
		" WHEN %[1]s < 86 THEN CONCAT(' ', %[2]s, ' ', %[4]s)"+
		" WHEN %[1]s < 89 THEN CONCAT(%[2]s, '   ', %[3]s, '  ', %[4]s, ' ')"+
		" WHEN %[1]s < 91 THEN ''"+
		" WHEN %[1]s < 94 THEN CONCAT(%[2]s, '-', %[4]s)"+
		" ELSE CONCAT(%[2]s, ' ', %[4]s) END", shape, f1, f2, f3)
	m := h(seed, "middle") + " MOD 100"
	// middleNames: 40 NULL, 22 empty, 2 blank, 30 one name, 6 two names.
	middle := fmt.Sprintf("CASE WHEN %[1]s < 40 THEN NULL WHEN %[1]s < 62 THEN '' WHEN %[1]s < 64 THEN ' '"+
		" WHEN %[1]s < 94 THEN %[2]s ELSE CONCAT(%[2]s, ' ', %[3]s) END", m, elt(h(seed, "m1"), middleNames), elt(h(seed, "m2"), middleNames))
	r := h(seed, "roster") + " MOD 100"
	// roster_status: 50 RO, 12 TE, 10 FS, 22 NULL, 5 empty, 1 'ro' (matches 'RO' in OSCAR's
	// case-insensitive collation, as it does for the seed's SQL).
	roster := fmt.Sprintf("CASE WHEN %[1]s < 50 THEN 'RO' WHEN %[1]s < 62 THEN 'TE' WHEN %[1]s < 72 THEN 'FS'"+
		" WHEN %[1]s < 94 THEN NULL WHEN %[1]s < 99 THEN '' ELSE 'ro' END", r)
	p := h(seed, "mrp") + " MOD 100"
	// provider_no (the MRP): 3 NULL, 2 empty, else one of twelve providers.
	mrp := fmt.Sprintf("CASE WHEN %[1]s < 3 THEN NULL WHEN %[1]s < 5 THEN '' ELSE %[2]s END", p, elt(h(seed, "mrp2"), providers))
	e := h(seed, "enrolled") + " MOD 100"
	// roster_enrolled_to: 55 NULL, 10 empty, 35 a provider (not always the MRP).
	enrolled := fmt.Sprintf("CASE WHEN %[1]s < 55 THEN NULL WHEN %[1]s < 65 THEN '' ELSE %[2]s END", e, elt(h(seed, "enrolled2"), providers))
	yob := fmt.Sprintf("1925 + %s MOD 99", h(seed, "yob"))
	return fmt.Sprintf("SELECT seq,"+
		" %s, %s, %s, %s,"+ // title, last_name, first_name, middleNames
		" CONCAT(1 + %s MOD 9999, ' Main St'), %s, 'ON', CONCAT('L8N ', 1 + %s MOD 9, 'A', %s MOD 10),"+
		" CONCAT('905-555-', LPAD(%s MOD 10000, 4, '0')), IF(%s MOD 3 = 0, NULL, CONCAT('patient', seq, '@example.org')),"+
		" %s, LPAD(1 + %s MOD 12, 2, '0'), LPAD(1 + %s MOD 28, 2, '0'),"+
		" LPAD(%s MOD 10000000000, 10, '0'), ELT(1 + %s MOD 3, 'AB', 'XY', ''), 'ON',"+
		" ELT(1 + %s MOD 2, 'F', 'M'),"+
		" %s, IF(%s MOD 2 = 0, DATE('2010-01-01') + INTERVAL %s MOD 3650 DAY, NULL), %s,"+
		" ELT(1 + %s MOD 4, 'AC', 'AC', 'IN', 'DE'), DATE('2005-01-01') + INTERVAL %s MOD 6000 DAY,"+
		" CONCAT('C', seq), %s, ELT(1 + %s MOD 3, '999998', '101', 'admin'),"+
		" TIMESTAMP('2015-01-01') + INTERVAL %s MOD 300000000 SECOND"+
		" FROM seq_%d_to_%d",
		elt(h(seed, "title"), []string{"", "MR", "MS", "MRS", "DR"}), elt(h(seed, "last"), lastNames), first, middle,
		h(seed, "addr"), elt(h(seed, "city"), cities), h(seed, "postal"), h(seed, "postal2"),
		h(seed, "phone"), h(seed, "email"),
		yob, h(seed, "mob"), h(seed, "dob"),
		h(seed, "hin"), h(seed, "ver"),
		h(seed, "sex"),
		roster, h(seed, "rdate"), h(seed, "rdate2"), enrolled,
		h(seed, "status"), h(seed, "joined"),
		mrp, h(seed, "upd"),
		h(seed, "updd"),
		lo, hi)
}

// Columns are the columns Fill writes, in order.
const Columns = "`demographic_no`, `title`, `last_name`, `first_name`, `middleNames`, `address`, `city`, `province`, `postal`," +
	" `phone`, `email`, `year_of_birth`, `month_of_birth`, `date_of_birth`, `hin`, `ver`, `hc_type`, `sex`," +
	" `roster_status`, `roster_date`, `roster_enrolled_to`, `patient_status`, `date_joined`, `chart_no`, `provider_no`," +
	" `lastUpdateUser`, `lastUpdateDate`"

// chunk bounds one INSERT: large enough to be fast, small enough to keep undo logs modest.
const chunk = 100_000

// Statements are the SQL that creates `demographic` in the current database and inserts
// rows rows generated from seed, with demographic_no 1..rows: for a server reached only
// through the mariadb client (the chroot tests' fixture host).
func Statements(rows int, seed int64) []string {
	out := []string{CreateTable}
	for lo := 1; lo <= rows; lo += chunk {
		hi := min(lo+chunk-1, rows)
		out = append(out, "INSERT INTO `demographic` ("+Columns+") "+selectRows(seed, lo, hi))
	}
	return out
}

// Fill runs Statements(rows, seed) on db.
func Fill(ctx context.Context, db *sql.DB, rows int, seed int64) error {
	for _, q := range Statements(rows, seed) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("demofixture: fill %d rows: %w", rows, err)
		}
	}
	return nil
}

// Create is Fill for tests: it fails t on error.
func Create(t testing.TB, db *sql.DB, rows int, seed int64) {
	t.Helper()
	if err := Fill(t.Context(), db, rows, seed); err != nil {
		t.Fatal(err)
	}
}

// Copy makes toDB.demographic an exact copy (rows, indexes, AUTO_INCREMENT) of
// fromDB.demographic, through db (a connection that can see both databases). It is how a test
// or benchmark gives the seed's SQL and emrkit identical data.
func Copy(ctx context.Context, db *sql.DB, fromDB, toDB string) error {
	for _, n := range []string{fromDB, toDB} {
		if !ident(n) {
			return fmt.Errorf("demofixture: %q is not a database name", n)
		}
	}
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE `%s`.`demographic` LIKE `%s`.`demographic`", toDB, fromDB),
		fmt.Sprintf("INSERT INTO `%s`.`demographic` SELECT * FROM `%s`.`demographic`", toDB, fromDB),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("demofixture: copy %s.demographic to %s: %w", fromDB, toDB, err)
		}
	}
	return nil
}

func ident(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
