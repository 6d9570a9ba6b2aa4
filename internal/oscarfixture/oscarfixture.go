// Package oscarfixture creates OSCAR-like tables for tests and the demo, written from design
// section 8: `security` and `SecurityArchive` before OSCAR's 2FA SQL (oscar.sql, also used by
// scripts/demo.sh), or with its five 2FA columns as OSCAR 19.5+ has them.
package oscarfixture

import (
	"database/sql"
	_ "embed"
	"strings"
	"testing"
)

//go:embed oscar.sql
var pre2FA string

// With2FA adds OSCAR 19.5+'s five 2FA columns to a CREATE TABLE of oscar.sql.
func With2FA(create string) string {
	cols := ", totp_enabled SMALLINT(1) NOT NULL DEFAULT 0, totp_secret VARCHAR(254), totp_algorithm VARCHAR(50) NOT NULL DEFAULT 'sha1'," +
		" totp_digits SMALLINT NOT NULL DEFAULT 6, totp_period SMALLINT NOT NULL DEFAULT 30"
	i := strings.Index(create, ",PRIMARY KEY")
	return create[:i] + cols + create[i:]
}

// Statements creates both tables (modern: with the 2FA columns) and three users, oscardoc
// with a PIN among them.
func Statements(modern bool) []string {
	var out []string
	for _, q := range strings.Split(strings.TrimSpace(pre2FA), ";\n") {
		q = strings.TrimSuffix(q, ";")
		if modern && strings.HasPrefix(q, "CREATE TABLE") {
			q = With2FA(q)
		}
		out = append(out, q)
	}
	return out
}

// Create runs Statements on db.
func Create(t testing.TB, db *sql.DB, modern bool) {
	t.Helper()
	for _, q := range Statements(modern) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// SQL is Statements as one script, for the mariadb client (the chroot tests).
func SQL(modern bool) string {
	return strings.Join(Statements(modern), ";\n") + ";\n"
}
