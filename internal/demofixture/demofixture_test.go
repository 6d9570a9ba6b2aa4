package demofixture

import (
	"testing"

	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
)

// TestFillIsDeterministicAndMixed: the same rows and seed give the same table on any server
// (tests compare the seed's SQL and emrkit on copies), a different seed another one, and the
// rows mix every shape the migrations must handle.
func TestFillIsDeterministicAndMixed(t *testing.T) {
	srv := mariadbtest.Start(t)
	for _, name := range []string{"a", "b", "c"} {
		srv.CreateDatabase(t, name)
	}
	Create(t, srv.DB(t, "a"), 5000, 1)
	Create(t, srv.DB(t, "b"), 5000, 1)
	Create(t, srv.DB(t, "c"), 5000, 2)
	if srv.Dump(t, "a", "demographic") != srv.Dump(t, "b", "demographic") {
		t.Fatal("same seed, different tables")
	}
	if srv.Checksum(t, "a", "demographic") == srv.Checksum(t, "c", "demographic") {
		t.Fatal("different seeds, same table")
	}
	db := srv.DB(t, "a")
	for what, q := range map[string]string{
		"one-word first names":       "first_name NOT LIKE '% %' AND first_name <> ''",
		"multi-word first names":     "TRIM(first_name) LIKE '% %'",
		"padded first names":         "BINARY first_name <> BINARY TRIM(first_name)",
		"doubled blanks":             "first_name LIKE '%  %'",
		"empty first names":          "first_name = ''",
		"NULL middleNames":           "middleNames IS NULL",
		"empty middleNames":          "BINARY middleNames = BINARY ''",
		"blank middleNames":          "BINARY middleNames = BINARY ' '",
		"set middleNames":            "middleNames <> ''",
		"rostered (RO)":              "roster_status = 'RO'",
		"lower-case ro":              "BINARY roster_status = BINARY 'ro'",
		"TE, FS":                     "roster_status IN ('TE', 'FS')",
		"NULL roster status":         "roster_status IS NULL",
		"no MRP":                     "provider_no IS NULL OR provider_no = ''",
		"rostered, enrolled to none": "roster_status = 'RO' AND roster_enrolled_to IS NULL",
		"rostered, enrolled empty":   "roster_status = 'RO' AND roster_enrolled_to = ''",
		"rostered, enrolled":         "roster_status = 'RO' AND roster_enrolled_to <> ''",
		"accented names":             "first_name LIKE '%é%'",
	} {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM demographic WHERE " + q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 10 {
			t.Errorf("%s: only %d of 5000 rows", what, n)
		}
	}
	var longest int
	db.QueryRow("SELECT MAX(CHAR_LENGTH(first_name)) FROM demographic").Scan(&longest)
	if longest > 30 {
		t.Fatalf("first_name of %d characters does not fit OSCAR's varchar(30)", longest)
	}
}
