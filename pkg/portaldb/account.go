package portaldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
)

// nativePlugin is the authentication plugin of the account emrkit creates.
const nativePlugin = "mysql_native_password"

// validAccount accepts a MariaDB account whose parts can be spliced into SQL as '...'
// literals: user names as portal.db_user allows them, hosts as portal.db_host allows them.
// Neither may hold a quote, a backslash or a blank, so nothing needs escaping.
func validAccount(user, host string) error {
	if !config.ValidUserName(user) {
		return fmt.Errorf("portal.db_user %q is not a MariaDB user name (letters, digits, . _ @ -, at most 30); fix portal.db_user in the emrkit config", user)
	}
	if host == "" || len(host) > 255 {
		return fmt.Errorf("portal.db_host %q is not a host or pattern (e.g. 127.0.0.1); fix portal.db_host in the emrkit config", host)
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".%_:-", c)) {
			return fmt.Errorf("portal.db_host %q is not a host or pattern (letters, digits, . %% _ : -); fix portal.db_host in the emrkit config", host)
		}
	}
	return nil
}

// accountSQL is 'user'@'host' for SQL text; validAccount must have accepted both parts.
func accountSQL(user, host string) string { return "'" + user + "'@'" + host + "'" }

// accountShown is `user`@`host`, as SHOW CREATE USER and SHOW GRANTS print the account.
func accountShown(user, host string) string { return quoteName(user) + "@" + quoteName(host) }

// quoteName backquotes a name the server reported, which may hold anything.
func quoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// quoteString is s as an SQL string literal, for names the server reported.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// desiredPrivileges is the canonical privilege set of the portal account: USAGE, SELECT on
// each table, and INSERT and UPDATE on the write table.
func desiredPrivileges(database string, tables []string, write string) []string {
	set := map[string]bool{"USAGE ON *.*": true}
	for _, t := range tables {
		set["SELECT ON "+quoteName(database)+"."+quoteName(t)] = true
	}
	set["INSERT ON "+quoteName(database)+"."+quoteName(write)] = true
	set["UPDATE ON "+quoteName(database)+"."+quoteName(write)] = true
	return sortedKeys(set)
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// proxy is a PROXY grant the account holds.
type proxy struct{ user, host string }

// account is what the server holds for one account: whether it is there, how it
// authenticates, and its privileges as a canonical sorted set of lines such as
// "SELECT ON `openemr`.`patient_data`", "GRANT OPTION ON *.*", "ROLE `r`",
// "DEFAULT ROLE `r`" or "PROXY ON 'u'@'h'". Two accounts with the same set may do exactly
// the same things.
type account struct {
	exists      bool
	plugin      string
	auth        string
	authOr      bool // more than one way to log in (e.g. unix_socket OR a password)
	defaultRole string
	proxies     []proxy
	privileges  []string
}

// authIs reports whether the account logs in with exactly the password whose hash is hash.
func (a account) authIs(hash string) bool {
	return a.exists && !a.authOr && a.plugin == nativePlugin && a.auth == hash
}

// readAccount reads user@host from the server's grant tables (mysql.global_priv for the
// account, information_schema and mysql.* for every kind of privilege).
func readAccount(ctx context.Context, db *sql.DB, user, host string) (account, error) {
	var a account
	fail := func(err error) (account, error) {
		return account{}, fmt.Errorf("read MariaDB account %s: %w", accountSQL(user, host), err)
	}
	err := db.QueryRowContext(ctx,
		"SELECT IFNULL(JSON_VALUE(Priv, '$.plugin'), ''), IFNULL(JSON_VALUE(Priv, '$.authentication_string'), ''),"+
			" JSON_EXISTS(Priv, '$.auth_or'), IFNULL(JSON_VALUE(Priv, '$.default_role'), '')"+
			" FROM mysql.global_priv WHERE User = ? AND Host = ?", user, host).
		Scan(&a.plugin, &a.auth, &a.authOr, &a.defaultRole)
	if errors.Is(err, sql.ErrNoRows) {
		return account{}, nil
	}
	if err != nil {
		return fail(err)
	}
	a.exists = true
	set := map[string]bool{}
	grantee := accountSQL(user, host)
	levels := []struct {
		query string
		on    func(cols []string) string // the ON part, from the columns before the privilege
		n     int
	}{
		{"SELECT PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
			func([]string) string { return "*.*" }, 0},
		{"SELECT TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?",
			func(c []string) string { return quoteName(c[0]) + ".*" }, 1},
		{"SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?",
			func(c []string) string { return quoteName(c[0]) + "." + quoteName(c[1]) }, 2},
		{"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE = ?",
			nil, 3},
	}
	for _, l := range levels {
		err := eachRow(ctx, db, l.query, []any{grantee}, l.n+2, func(c []string) {
			priv, grantable := c[l.n], c[l.n+1] == "YES"
			if l.on == nil { // a column privilege: SELECT (`col`) ON `db`.`table`
				on := quoteName(c[0]) + "." + quoteName(c[1])
				set[priv+" ("+quoteName(c[2])+") ON "+on] = true
				if grantable {
					set["GRANT OPTION ON "+on] = true
				}
				return
			}
			set[priv+" ON "+l.on(c)] = true
			if grantable {
				set["GRANT OPTION ON "+l.on(c)] = true
			}
		})
		if err != nil {
			return fail(err)
		}
	}
	// Routines, roles and proxies are not in information_schema.
	err = eachRow(ctx, db, "SELECT Db, Routine_name, Routine_type, Proc_priv FROM mysql.procs_priv WHERE User = ? AND Host = ?",
		[]any{user, host}, 4, func(c []string) {
			on := " ON " + c[2] + " " + quoteName(c[0]) + "." + quoteName(c[1])
			for p := range strings.SplitSeq(c[3], ",") {
				switch p = strings.ToUpper(p); p {
				case "":
				case "GRANT":
					set["GRANT OPTION"+on] = true
				default:
					set[p+on] = true
				}
			}
		})
	if err != nil {
		return fail(err)
	}
	err = eachRow(ctx, db, "SELECT Role, Admin_option FROM mysql.roles_mapping WHERE User = ? AND Host = ?",
		[]any{user, host}, 2, func(c []string) {
			line := "ROLE " + quoteName(c[0])
			if c[1] == "Y" {
				line += " WITH ADMIN OPTION"
			}
			set[line] = true
		})
	if err != nil {
		return fail(err)
	}
	err = eachRow(ctx, db, "SELECT Proxied_user, Proxied_host, With_grant FROM mysql.proxies_priv WHERE User = ? AND Host = ?",
		[]any{user, host}, 3, func(c []string) {
			line := "PROXY ON " + quoteString(c[0]) + "@" + quoteString(c[1])
			if c[2] != "0" {
				line += " WITH GRANT OPTION"
			}
			set[line] = true
			a.proxies = append(a.proxies, proxy{c[0], c[1]})
		})
	if err != nil {
		return fail(err)
	}
	if a.defaultRole != "" {
		set["DEFAULT ROLE "+quoteName(a.defaultRole)] = true
	}
	a.privileges = sortedKeys(set)
	return a, nil
}

// eachRow runs query and calls f with each row's n columns as strings.
func eachRow(ctx context.Context, db *sql.DB, query string, args []any, n int, f func([]string)) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([]sql.NullString, n)
		ptrs := make([]any, n)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		cols := make([]string, n)
		for i, v := range vals {
			cols[i] = v.String
		}
		f(cols)
	}
	return rows.Err()
}

// showCreateUser returns SHOW CREATE USER's statement for the account.
func showCreateUser(ctx context.Context, db *sql.DB, user, host string) (string, error) {
	var stmt string
	if err := db.QueryRowContext(ctx, "SHOW CREATE USER "+accountSQL(user, host)).Scan(&stmt); err != nil {
		return "", fmt.Errorf("SHOW CREATE USER %s: %w", accountSQL(user, host), err)
	}
	return stmt, nil
}

// showGrants returns SHOW GRANTS's statements for the account, in the server's order (role
// grants first, SET DEFAULT ROLE last), which is an order they can be run in again.
func showGrants(ctx context.Context, db *sql.DB, user, host string) ([]string, error) {
	var out []string
	err := eachRow(ctx, db, "SHOW GRANTS FOR "+accountSQL(user, host), nil, 1, func(c []string) { out = append(out, c[0]) })
	if err != nil {
		return nil, fmt.Errorf("SHOW GRANTS FOR %s: %w", accountSQL(user, host), err)
	}
	return out, nil
}

// Grants returns the account user@host's grants as SHOW GRANTS prints them, with password
// hashes hidden, for `emrkit portal status`; nil and no error when there is no such account.
func Grants(ctx context.Context, db *sql.DB, user, host string) ([]string, error) {
	if err := validAccount(user, host); err != nil {
		return nil, err
	}
	host = strings.ToLower(host) // as MariaDB stores it
	a, err := readAccount(ctx, db, user, host)
	if err != nil || !a.exists {
		return nil, err
	}
	lines, err := showGrants(ctx, db, user, host)
	if err != nil {
		return nil, err
	}
	for i, l := range lines {
		lines[i] = hideSecrets(l)
	}
	return lines, nil
}

// hideSecrets replaces the quoted authentication strings in a GRANT or CREATE USER line
// (IDENTIFIED BY PASSWORD '*...', USING '...') with <hidden>.
func hideSecrets(line string) string {
	var b strings.Builder
	for {
		i, skip := -1, 0
		for _, marker := range []string{"PASSWORD '", "USING '"} {
			if j := strings.Index(line, marker); j >= 0 && (i < 0 || j < i) {
				i, skip = j, len(marker)
			}
		}
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i+skip-1])
		rest := line[i+skip:]
		end := strings.IndexByte(rest, '\'')
		if end < 0 {
			b.WriteString("<hidden>")
			return b.String()
		}
		b.WriteString("<hidden>")
		line = rest[end+1:]
	}
}

// tableMissing returns the first of tables that database lacks, or "".
func tableMissing(ctx context.Context, db *sql.DB, database string, tables []string) (string, error) {
	have := map[string]bool{}
	err := eachRow(ctx, db, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
		[]any{database}, 1, func(c []string) { have[c[0]] = true })
	if err != nil {
		return "", fmt.Errorf("list the tables of %s: %w", database, err)
	}
	for _, t := range tables {
		if !have[t] {
			return t, nil
		}
	}
	return "", nil
}

// databaseExists reports whether the server has database.
func databaseExists(ctx context.Context, db *sql.DB, database string) (bool, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", database).Scan(&n); err != nil {
		return false, fmt.Errorf("look for database %s: %w", database, err)
	}
	return n > 0, nil
}

// validTables checks every name is an identifier emrkit may splice into SQL.
func validTables(database string, tables []string) error {
	if err := mariadb.ValidIdentifier(database); err != nil {
		return fmt.Errorf("database name: %w; fix database.name in the emrkit config", err)
	}
	for _, t := range tables {
		if err := mariadb.ValidIdentifier(t); err != nil {
			return fmt.Errorf("portal table: %w; fix portal.tables in the emrkit config", err)
		}
	}
	return nil
}
