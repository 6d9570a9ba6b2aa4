// Package oscarfixture creates OSCAR-like tables for tests, written from design section 8:
// `security` and `SecurityArchive` before OSCAR's 2FA SQL, or with its five columns (19.5+).
package oscarfixture

import (
	"database/sql"
	"strings"
	"testing"
)

// SecurityPre2FA is OSCAR's security table before the 2FA SQL.
const SecurityPre2FA = "CREATE TABLE security (" +
	"security_no int(6) NOT NULL AUTO_INCREMENT, user_name varchar(30) NOT NULL, password varchar(255) NOT NULL," +
	"provider_no varchar(6) DEFAULT NULL, pin varchar(255) DEFAULT NULL, b_ExpireSet int(1) DEFAULT 1," +
	"date_ExpireDate date DEFAULT '2100-01-01', b_LocalLockSet int(1) DEFAULT 1, b_RemoteLockSet int(1) DEFAULT 1," +
	"forcePasswordReset tinyint(1) DEFAULT NULL, passwordUpdateDate datetime DEFAULT NULL, pinUpdateDate datetime DEFAULT NULL," +
	"PRIMARY KEY (security_no), UNIQUE KEY user_name (user_name)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3"

// ArchivePre2FA is OSCAR's SecurityArchive before the 2FA SQL.
const ArchivePre2FA = "CREATE TABLE SecurityArchive (" +
	"id int(11) NOT NULL AUTO_INCREMENT, security_no int(6) NOT NULL, user_name varchar(30) NOT NULL," +
	"password varchar(255) NOT NULL, provider_no varchar(6) DEFAULT NULL, pin varchar(255) DEFAULT NULL," +
	"PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3"

// With2FA adds OSCAR 19.5+'s five 2FA columns to one of the CREATE TABLEs above.
func With2FA(create string) string {
	cols := ", totp_enabled SMALLINT(1) NOT NULL DEFAULT 0, totp_secret VARCHAR(254), totp_algorithm VARCHAR(50) NOT NULL DEFAULT 'sha1'," +
		" totp_digits SMALLINT NOT NULL DEFAULT 6, totp_period SMALLINT NOT NULL DEFAULT 30"
	i := strings.Index(create, ",PRIMARY KEY")
	return create[:i] + cols + create[i:]
}

// Statements creates both tables (modern: with the 2FA columns) and three users, oscardoc
// with a PIN among them.
func Statements(modern bool) []string {
	sec, arc := SecurityPre2FA, ArchivePre2FA
	if modern {
		sec, arc = With2FA(sec), With2FA(arc)
	}
	return []string{sec, arc,
		"INSERT INTO security (user_name, password, provider_no, pin, pinUpdateDate) VALUES " +
			"('oscardoc','{sha}x','999998','1117','2019-05-16 14:31:52'), ('nurse','{sha}y','100','4321',NULL), ('doc2','{sha}z','101',NULL,NULL)",
		"INSERT INTO SecurityArchive (security_no, user_name, password, pin) VALUES (1,'oscardoc','{sha}old','1117')",
	}
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
