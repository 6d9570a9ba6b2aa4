package openemr

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// AccountWarnings reports what "Securing OpenEMR" says of MariaDB's own accounts ("ensure the
// root password is set"): anonymous users, a root that logs in from another host, accounts
// that need no authentication at all, and the `test` database anyone may use. emrkit reports
// them and changes nothing: accounts are the DBA's, and a wrong guess locks OpenEMR out.
func AccountWarnings(ctx context.Context, db *sql.DB) ([]string, error) {
	var out []string
	list := func(q string) ([]string, error) {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return nil, err
			}
			got = append(got, s)
		}
		return got, rows.Err()
	}
	// mysql.global_priv (MariaDB 10.4+) says what mysql.user does not: roles and locked
	// accounts, which cannot log in, and a second way to authenticate (auth_or: Debian's root
	// also logs in over the unix socket).
	const account = "CONCAT(User, '@''', Host, '''')"
	const canLogIn = "IFNULL(JSON_VALUE(Priv, '$.is_role'), '0') NOT IN ('1', 'true')" +
		" AND IFNULL(JSON_VALUE(Priv, '$.account_locked'), '0') NOT IN ('1', 'true')"
	for _, c := range []struct{ query, finding, fix string }{
		{"SELECT CONCAT('''''@''', Host, '''') FROM mysql.global_priv WHERE User = '' ORDER BY Host",
			"anonymous MariaDB accounts", "DROP USER each of them (mariadb-secure-installation does)"},
		{"SELECT " + account + " FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1', '::1') AND " +
			canLogIn + " ORDER BY Host",
			"MariaDB root can log in from other hosts", "DROP USER them; administer over SSH"},
		{"SELECT " + account + " FROM mysql.global_priv WHERE User <> '' AND " + canLogIn +
			" AND IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') = ''" +
			" AND IFNULL(JSON_VALUE(Priv, '$.plugin'), 'mysql_native_password') IN ('mysql_native_password', 'mysql_old_password')" +
			" AND NOT JSON_EXISTS(Priv, '$.auth_or') ORDER BY User, Host",
			"MariaDB accounts log in without any password", "set one (ALTER USER ... IDENTIFIED BY ...) or use unix_socket"},
		{"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test' OR SCHEMA_NAME LIKE 'test\\_%' ORDER BY SCHEMA_NAME",
			"the `test` database is there (any account may use it)", "DROP DATABASE test"},
	} {
		got, err := list(c.query)
		if err != nil {
			return out, fmt.Errorf("check MariaDB accounts: %w", err)
		}
		if len(got) > 0 {
			out = append(out, fmt.Sprintf("%s: %s; %s", c.finding, strings.Join(got, ", "), c.fix))
		}
	}
	return out, nil
}
