package backup

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// dumpOf is a small dump as mariadb-dump writes it: header, two tables, a routine, footer.
func dumpOf(demographicRows ...string) string {
	var b strings.Builder
	b.WriteString("/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19-10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n--\n" +
		"-- Host: localhost    Database: oscar_15\n-- ------------------------------------------------------\n-- Server version\t10.11.19-MariaDB-0+deb12u1\n\n" +
		"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!40101 SET NAMES utf8mb4 */;\n\n" +
		"--\n-- Table structure for table `demographic`\n--\n\nDROP TABLE IF EXISTS `demographic`;\n" +
		"/*!40101 SET @saved_cs_client     = @@character_set_client */;\nCREATE TABLE `demographic` (\n  `demographic_no` int(10) NOT NULL,\n" +
		"  `first_name` varchar(30) DEFAULT NULL COMMENT 'it''s; the -- first name',\n  PRIMARY KEY (`demographic_no`)\n) ENGINE=InnoDB;\n\n" +
		"--\n-- Dumping data for table `demographic`\n--\n\nLOCK TABLES `demographic` WRITE;\n/*!40000 ALTER TABLE `demographic` DISABLE KEYS */;\n")
	for _, r := range demographicRows {
		b.WriteString("INSERT INTO `demographic` VALUES " + r + ";\n")
	}
	b.WriteString("/*!40000 ALTER TABLE `demographic` ENABLE KEYS */;\nUNLOCK TABLES;\n\n" +
		"--\n-- Table structure for table `security`\n--\n\nDROP TABLE IF EXISTS `security`;\nCREATE TABLE `security` (`security_no` int) ENGINE=InnoDB;\n\n" +
		"--\n-- Dumping data for table `security`\n--\n\nLOCK TABLES `security` WRITE;\nINSERT INTO `security` VALUES (1),(2);\nUNLOCK TABLES;\n\n" +
		"--\n-- Dumping routines for database 'oscar_15'\n--\n/*!50003 DROP PROCEDURE IF EXISTS `p` */;\nDELIMITER ;;\n" +
		"CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\nBEGIN\n  SELECT 'USE x; CREATE DATABASE y';\n  SELECT 1;\nEND ;;\nDELIMITER ;\n\n" +
		"/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;\n\n-- Dump completed on 2026-12-05 10:00:00\n")
	return b.String()
}

// scanIn feeds s to a scanner in writes of n bytes.
func scanIn(s string, n int, limit int64) (*Scanner, error) {
	return scanBytes([]byte(s), n, limit)
}

func scanBytes(s []byte, n int, limit int64) (*Scanner, error) {
	sc := NewScanner(limit)
	for i := 0; i < len(s); i += n {
		if _, err := sc.Write(s[i:min(i+n, len(s))]); err != nil {
			return sc, err
		}
	}
	return sc, nil
}

func TestScannerReadsADump(t *testing.T) {
	dump := dumpOf(`(1,'Jane Mary'),(2,'O\'Brien; -- not a comment')`, `(3,'Ann "x" \\')`)
	whole, err := scanIn(dump, len(dump), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !whole.Completed() || whole.Database() != "oscar_15" || len(whole.Digests()) != 2 {
		t.Fatalf("completed %v, database %q, digests %v", whole.Completed(), whole.Database(), whole.Digests())
	}
	for _, n := range []int{1, 2, 3, 7, 64} {
		part, err := scanIn(dump, n, 1<<20)
		if err != nil {
			t.Fatalf("in writes of %d bytes: %v", n, err)
		}
		for table, sum := range whole.Digests() {
			if part.Digests()[table] != sum {
				t.Fatalf("in writes of %d bytes, %s's digest differs", n, table)
			}
		}
	}
	lines := strings.Split(dump, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "INSERT INTO `demographic`") {
			if got := whole.TableAt(int64(i + 1)); got != "demographic" {
				t.Errorf("line %d is in table %q, want demographic", i+1, got)
			}
		}
		if strings.HasPrefix(l, "INSERT INTO `security`") {
			if got := whole.TableAt(int64(i + 1)); got != "security" {
				t.Errorf("line %d is in table %q, want security", i+1, got)
			}
		}
	}
	if got := whole.TableAt(3); got != "" {
		t.Errorf("the header is in table %q", got)
	}
}

func TestScannerRefusesOversizedStatements(t *testing.T) {
	long := "(1,'" + strings.Repeat("x", 5000) + "')"
	dump := dumpOf("(1,'short')", long)
	line := int64(strings.Count(dump[:strings.Index(dump, long)], "\n") + 1)
	for _, n := range []int{1, 100, len(dump)} {
		_, err := scanIn(dump, n, 4096)
		var d *DamagedError
		if !errors.As(err, &d) || d.Table != "demographic" || d.Line != line ||
			!strings.Contains(d.Reason, "larger than the server's max_allowed_packet (4096 bytes)") {
			t.Fatalf("writes of %d: %#v", n, err)
		}
		if strings.Contains(err.Error(), "xxxx") {
			t.Fatalf("the error quotes the data: %v", err)
		}
	}
	// A statement over many lines counts whole; comments between statements do not count.
	multi := dumpOf() + strings.Repeat("-- "+strings.Repeat("c", 100)+"\n", 100) + "SELECT\n" + strings.Repeat("1+\n", 3000) + "1;\n"
	if _, err := scanIn(multi, 512, 4096); err == nil || !strings.Contains(err.Error(), "max_allowed_packet") {
		t.Fatalf("a 9 KB statement over 3000 lines: %v", err)
	}
	if _, err := scanIn(dumpOf()+strings.Repeat("-- "+strings.Repeat("c", 100)+"\n", 100), 512, 4096); err != nil {
		t.Fatalf("10 KB of comments taken for a statement: %v", err)
	}
}

func TestScannerRefusesLeavingTheDatabase(t *testing.T) {
	for _, stmt := range []string{"USE `oscar_15`;", "use oscar_15;", "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `oscar_15`;",
		"/*!40000 DROP DATABASE IF EXISTS `x`*/;", "DROP SCHEMA x;", "/*M!100100 USE x */;", "  \n  Use\n x ;"} {
		_, err := scanIn(dumpOf()+stmt+"\n", 1, 0)
		if err == nil || !strings.Contains(err.Error(), "switches to another database") {
			t.Errorf("%q: %v", stmt, err)
		}
	}
	for _, ok := range []string{"-- USE x;", "# USE x;", "/* USE x; */ SELECT 1;", "INSERT INTO `t` VALUES ('USE x;');", "SELECT `use`;", "SET @USE_X=1;"} {
		if _, err := scanIn(dumpOf()+ok+"\n", 1, 0); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

func TestScannerBoundsWhatItRemembers(t *testing.T) {
	var b bytes.Buffer
	for i := 0; i <= 2*maxTables; i++ {
		b.WriteString("-- Dumping data for table `t`\n")
	}
	if _, err := scanIn(b.String(), 1<<16, 0); err == nil || !strings.Contains(err.Error(), "more than 100000 tables") {
		t.Fatalf("%v", err)
	}
}

func BenchmarkScanner(b *testing.B) {
	row := "(1,'Jane','Doe','1961-02-03','F','a street, with \\'quotes\\'','\\\\','0'),"
	dump := []byte(dumpOf(strings.Repeat(row, 12000) + "(2,'x')"))
	b.SetBytes(int64(len(dump)))
	for b.Loop() {
		if _, err := scanBytes(dump, 256<<10, 16<<20); err != nil {
			b.Fatal(err)
		}
	}
}
