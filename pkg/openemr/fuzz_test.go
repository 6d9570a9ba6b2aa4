package openemr

import (
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/openemrfixture"
)

// FuzzParseSQLConf: whatever a site's sqlconf.php holds (the web server's account may write
// it), ParseSQLConf returns a database or one fixed line, never a panic.
func FuzzParseSQLConf(f *testing.F) {
	for _, major := range []int{7, 8} {
		f.Add(openemrfixture.Tree{Major: major, Database: "openemr"}.Files()["sites/default/sqlconf.php"])
	}
	f.Add("<?php\n$dbase\t= 'openemr';\n$config = 0; ////\n")
	f.Add("<?php\n$host = \"db\";\n$port = 3306 ;\n$dbase = 'o\\'emr';\n$config = '1';\n")
	f.Add("<?php\n$host = 'x\n$dbase = evil;';\n$dbase = 'real';\n")
	f.Add("<?php\n$dbase = getenv('DB');\n")
	f.Fuzz(func(t *testing.T, php string) {
		c, err := ParseSQLConf(php)
		if err != nil {
			if msg := err.Error(); len(msg) > 100 || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error %q", msg)
			}
			return
		}
		if c.Database == "" {
			t.Fatalf("%q: no error and no database", php)
		}
	})
}

// FuzzSQLConfValues: in a sqlconf.php written as OpenEMR's installer writes it (or as an
// admin might edit it: double quotes, bare numbers, blanks), the values read are the file's.
func FuzzSQLConfValues(f *testing.F) {
	f.Add("localhost", "3306", "openemr", true, uint8(0))
	f.Add("db.example", "3307", "openemr_site2", false, uint8(1))
	f.Add("127.0.0.1", "", "o'emr;x", true, uint8(2))
	f.Add("/run/mysqld/mysqld.sock", "3306", `back\slash`, true, uint8(3))
	f.Fuzz(func(t *testing.T, host, port, dbase string, configured bool, style uint8) {
		php := sqlconf(map[string]string{"host": host, "port": port, "dbase": dbase}, configured, style)
		c, err := ParseSQLConf(php)
		if dbase == "" {
			if err == nil && c.Database != "" {
				t.Fatalf("%q: read database %q", php, c.Database)
			}
			return
		}
		want := SQLConf{Host: host, Port: port, Database: dbase, Configured: configured}
		if err != nil || c != want {
			t.Fatalf("%q: read %+v, %v; want %+v", php, c, err, want)
		}
	})
}

// sqlconf renders a sqlconf.php in the installer's layout. style picks the quoting: 0 and 1
// single quotes (with and without the installer's tab), 2 double quotes where the value
// allows it, 3 bare digits where it allows it; blanks around ";" on odd styles.
func sqlconf(vals map[string]string, configured bool, style uint8) string {
	var b strings.Builder
	b.WriteString("<?php\n//  OpenEMR\n//  MySQL Config\n\nglobal $disable_utf8_flag;\n$disable_utf8_flag = false;\n\n")
	end := ";"
	if style%2 == 1 {
		end = " ;"
	}
	for _, k := range []string{"host", "port", "login", "pass", "dbase"} {
		v, ok := vals[k]
		if !ok {
			v = "secret"
		}
		b.WriteString("$" + k + "\t= " + phpString(v, style%4) + end + "\n")
	}
	b.WriteString("$db_encoding\t= 'utf8mb4';\n\n$sqlconf = array();\nglobal $sqlconf;\n$sqlconf[\"host\"]= $host;\n")
	config := "0"
	if configured {
		config = "1"
	}
	b.WriteString("\n//////DO NOT TOUCH THIS///\n$config = " + config + "; /////////////\n?>\n")
	return b.String()
}

func phpString(v string, style uint8) string {
	switch {
	case style == 2 && !strings.ContainsAny(v, `"\$`):
		return `"` + v + `"`
	case style == 3 && v != "" && strings.Trim(v, "0123456789") == "":
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// FuzzParseVersion: whatever version.php holds, ParseVersion returns a version or an error,
// never a panic; a version reads as major.minor.patch.
func FuzzParseVersion(f *testing.F) {
	for _, major := range []int{7, 8} {
		f.Add(openemrfixture.Tree{Major: major}.Files()["version.php"])
	}
	f.Add("<?php\n$v_major = '7';\n$v_minor = '0';\n$v_patch = '2';\n$v_tag = '-dev';\n$v_realpatch = '1';\n$v_database = 99999999999999999999;\n")
	f.Fuzz(func(t *testing.T, php string) {
		v, err := ParseVersion(php)
		if err == nil && !strings.HasPrefix(v.String(), v.Major+"."+v.Minor+"."+v.Patch) {
			t.Fatalf("%+v reads %q", v, v.String())
		}
	})
}

// TestSQLConfCommentsAreNotSettings: a setting kept in a comment is not the one PHP runs,
// and a comment opener inside a quoted value opens nothing.
func TestSQLConfCommentsAreNotSettings(t *testing.T) {
	for php, want := range map[string]string{
		"<?php\n$dbase = 'openemr';\n/*\n$dbase = 'old';\n*/\n":             "openemr",
		"<?php\n$dbase = 'openemr';\n// $dbase = 'old';\n# $dbase = 'x';\n": "openemr",
		"<?php\n$host = 'a/*';\n$dbase = 'openemr';\n$port = '*/';\n":       "openemr",
		"<?php\n$dbase = 'openemr'; /* unterminated\n$dbase = 'old';\n":     "openemr",
	} {
		c, err := ParseSQLConf(php)
		if err != nil || c.Database != want {
			t.Errorf("%q: database %q, %v; want %q", php, c.Database, err, want)
		}
	}
}
