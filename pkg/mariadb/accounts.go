package mariadb

import (
	"context"
	"database/sql"
	"fmt"
)

// AccountCheck is one of the checks of MariaDB's own accounts that "Securing OpenEMR" and
// mariadb-secure-installation make: what was looked for, what was found, and the fix.
type AccountCheck struct {
	Kind    string   // anonymous, remote-root, no-password, test-database
	Finding string   // what it means, for a report
	Fix     string   // the statement that fixes it
	Found   []string // accounts or databases; none means the check passes
}

// AccountChecks looks for anonymous accounts, a root that logs in from another host, accounts
// that need no authentication at all, and the `test` database anyone may use. It changes
// nothing: accounts are the DBA's.
func AccountChecks(ctx context.Context, db *sql.DB) ([]AccountCheck, error) {
	// mysql.global_priv (MariaDB 10.4+) says what mysql.user does not: roles and locked
	// accounts, which cannot log in, and a second way to authenticate (auth_or: Debian's root
	// also logs in over the unix socket).
	const account = "CONCAT(User, '@''', Host, '''')"
	const canLogIn = "IFNULL(JSON_VALUE(Priv, '$.is_role'), '0') NOT IN ('1', 'true')" +
		" AND IFNULL(JSON_VALUE(Priv, '$.account_locked'), '0') NOT IN ('1', 'true')"
	checks := []struct {
		AccountCheck
		query string
	}{
		{AccountCheck{Kind: "anonymous", Finding: "anonymous MariaDB accounts", Fix: "DROP USER each of them (mariadb-secure-installation does)"},
			"SELECT CONCAT('''''@''', Host, '''') FROM mysql.global_priv WHERE User = '' ORDER BY Host"},
		{AccountCheck{Kind: "remote-root", Finding: "MariaDB root can log in from other hosts", Fix: "DROP USER them; administer over SSH"},
			"SELECT " + account + " FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1', '::1') AND " +
				canLogIn + " ORDER BY Host"},
		{AccountCheck{Kind: "no-password", Finding: "MariaDB accounts log in without any password", Fix: "set one (ALTER USER ... IDENTIFIED BY ...) or use unix_socket"},
			"SELECT " + account + " FROM mysql.global_priv WHERE User <> '' AND " + canLogIn +
				" AND IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') = ''" +
				" AND IFNULL(JSON_VALUE(Priv, '$.plugin'), 'mysql_native_password') IN ('mysql_native_password', 'mysql_old_password')" +
				" AND NOT JSON_EXISTS(Priv, '$.auth_or') ORDER BY User, Host"},
		{AccountCheck{Kind: "test-database", Finding: "the `test` database is there (any account may use it)", Fix: "DROP DATABASE test"},
			"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test' OR SCHEMA_NAME LIKE 'test\\_%' ORDER BY SCHEMA_NAME"},
	}
	var out []AccountCheck
	for _, c := range checks {
		rows, err := db.QueryContext(ctx, c.query)
		if err != nil {
			return nil, fmt.Errorf("check MariaDB accounts: %w", err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return nil, err
			}
			c.Found = append(c.Found, s)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, c.AccountCheck)
	}
	return out, nil
}
