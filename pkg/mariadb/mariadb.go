// Package mariadb owns emrkit's connections to the EMR database: opening them from the
// config with errors that name the cause and the fix, running mariadb and mariadb-dump with
// the credentials on an inherited descriptor (never their command line, never a file a kill
// could leave behind), and validating the
// identifiers that emrkit must splice into SQL (placeholders cannot stand for names).
package mariadb

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
)

// Sentinels for the failures a caller may act on; test them with errors.Is.
var (
	// ErrUnreachable: no server answers at the configured socket or address, as when
	// MariaDB is stopped or the EMR is not installed on this host yet.
	ErrUnreachable = errors.New("mariadb: database server unreachable")
	// ErrNoDatabase: the server answers but database.name does not exist on it.
	ErrNoDatabase = errors.New("mariadb: database does not exist")
	// ErrAccessDenied: the server refused database.user with the configured password.
	ErrAccessDenied = errors.New("mariadb: access denied")
)

// MariaDB server error numbers Open translates into advice.
const (
	erDBAccessDenied       = 1044
	erAccessDenied         = 1045
	erBadDB                = 1049
	erAccessDeniedNoPasswd = 1698
)

// dialTimeout bounds connecting, so a wrong host fails in seconds rather than minutes.
const dialTimeout = 5 * time.Second

// connError carries a one-line message for people while still unwrapping to a sentinel
// and the driver's own error for code.
type connError struct {
	msg  string
	errs []error
}

func (e *connError) Error() string   { return e.msg }
func (e *connError) Unwrap() []error { return e.errs }

// Open connects to the database db names and pings it, so that a server that is down, a
// missing database or a refused login surfaces here as one clear line rather than at the
// first query.
func Open(ctx context.Context, db config.Database, opts ...Option) (*sql.DB, error) {
	if db.Name != "" {
		if err := ValidIdentifier(db.Name); err != nil {
			return nil, fmt.Errorf("mariadb: database.name: %w", err)
		}
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = endpoint(db)
	cfg.User = db.User
	cfg.DBName = db.Name
	cfg.ParseTime = true
	cfg.Timeout = dialTimeout
	// One statement per call: a value that slipped into SQL can never append another.
	cfg.MultiStatements = false
	// The driver's own log lines ("broken pipe" on a dropped connection) would land in cron
	// mail and dpkg output; errors reach callers as returned values instead.
	cfg.Logger = &mysql.NopLogger{}
	for _, o := range opts {
		o(cfg)
	}
	if db.PasswordFile != "" {
		pw, err := readPassword(db.PasswordFile)
		if err != nil {
			return nil, err
		}
		cfg.Passwd = pw
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mariadb: connection settings: %w", err)
	}
	sdb := sql.OpenDB(conn)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, explain(err, db)
	}
	return sdb, nil
}

// Option adjusts the settings of the connections Open makes.
type Option func(*mysql.Config)

// MaxPacket lets statements of up to n bytes through, where the driver's own limit (64 MiB)
// would refuse what the server accepts: a restore's statements, up to max_allowed_packet.
func MaxPacket(n int64) Option {
	return func(c *mysql.Config) { c.MaxAllowedPacket = int(n) }
}

// endpoint picks the socket when one is configured and no host overrides it, as the
// mariadb client does for localhost.
func endpoint(db config.Database) (network, addr string) {
	if db.Socket != "" && db.Host == "" {
		return "unix", db.Socket
	}
	host, port := db.Host, db.Port.N
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		port = 3306
	}
	return "tcp", net.JoinHostPort(host, strconv.Itoa(port))
}

// explain turns a failed ping into one line naming the cause and the config key to fix.
func explain(err error, db config.Database) error {
	network, where := endpoint(db)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("mariadb: connect to %s: %w", where, err)
	}
	if myErr, ok := errors.AsType[*mysql.MySQLError](err); ok {
		switch myErr.Number {
		case erBadDB:
			return &connError{
				msg: fmt.Sprintf("mariadb: database %q does not exist on the server at %s; fix database.name in the emrkit config, or install the EMR first",
					db.Name, where),
				errs: []error{ErrNoDatabase, err},
			}
		case erAccessDenied, erAccessDeniedNoPasswd, erDBAccessDenied:
			return &connError{
				msg: fmt.Sprintf("mariadb: access denied for user %q at %s (%s); fix database.user or database.password_file in the emrkit config",
					db.User, where, oneLine(myErr.Message)),
				errs: []error{ErrAccessDenied, err},
			}
		}
		return fmt.Errorf("mariadb: connect to %s as %q: %w", where, db.User, err)
	}
	if unreachable(err) {
		cause := err
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Err != nil {
			cause = op.Err // the OpError repeats the address we already print
		}
		key := "database.socket"
		if network == "tcp" {
			key = "database.host and database.port"
		}
		return &connError{
			msg: fmt.Sprintf("mariadb: cannot reach the database server at %s (%s); start MariaDB (systemctl start mariadb) or fix %s in the emrkit config",
				where, oneLine(cause.Error()), key),
			errs: []error{ErrUnreachable, err},
		}
	}
	return fmt.Errorf("mariadb: connect to %s as %q: %w", where, db.User, err)
}

// unreachable reports whether err means nothing usable answered: no socket, a refused or
// timed-out dial, or a connection dropped during the handshake by a server shutting down.
func unreachable(err error) bool {
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// readPassword reads the first line of path, refusing a file everyone can read: the
// password opens every patient record.
func readPassword(path string) (string, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return "", fmt.Errorf("mariadb: password file: %w; fix database.password_file in the emrkit config", err)
	}
	defer f.Close()
	fi, err := f.Stat() // of the open file, so a swap after the check cannot slip through
	if err != nil {
		return "", fmt.Errorf("mariadb: password file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("mariadb: password file %s is not a regular file; fix database.password_file in the emrkit config", path)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("mariadb: password file %s is readable by everyone (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("mariadb: password file %s: %w", path, err)
	}
	pw, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSuffix(pw, "\r"), nil
}

// OptionText is the [client] option file that makes mariadb or mariadb-dump reach db's
// server as db says, password included: what Command hands a client program instead of a
// password on its command line, which every user sees in ps.
func OptionText(db config.Database) ([]byte, error) {
	var b strings.Builder
	b.WriteString("[client]\n")
	network, addr := endpoint(db)
	// protocol pins the transport: the host's own option files, read first, may name another.
	opts := [][2]string{{"user", db.User}, {"protocol", "socket"}, {"socket", addr}}
	if network == "tcp" {
		host, port, _ := net.SplitHostPort(addr)
		opts = [][2]string{{"user", db.User}, {"protocol", "tcp"}, {"host", host}, {"port", port}}
	}
	if db.PasswordFile != "" {
		pw, err := readPassword(db.PasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, [2]string{"password", pw})
	}
	for _, o := range opts {
		if strings.ContainsRune(o[1], 0) {
			return nil, fmt.Errorf("mariadb: option file: %s contains a NUL byte", o[0])
		}
		fmt.Fprintf(&b, "%s=%s\n", o[0], quoteOption(o[1]))
	}
	return []byte(b.String()), nil
}

// quoteOption double-quotes v with the escapes MariaDB's option-file reader undoes, so a
// password holding quotes, backslashes, '#' (a comment otherwise) or blanks survives intact.
func quoteOption(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "\b", `\b`)
	return `"` + r.Replace(v) + `"`
}

// ValidIdentifier accepts the database, table and column names emrkit may splice into SQL:
// 1 to 64 letters, digits, _ or $. That is narrower than MariaDB allows but covers OSCAR's
// schema and leaves nothing that quoting would have to escape.
func ValidIdentifier(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%q is not a valid identifier: it must be 1 to 64 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$') {
			return fmt.Errorf("%q is not a valid identifier: only letters, digits, _ and $ are allowed", name)
		}
	}
	return nil
}

// QuoteIdentifier returns name in backquotes after ValidIdentifier accepts it, for the
// places in SQL where a placeholder cannot stand.
func QuoteIdentifier(name string) (string, error) {
	if err := ValidIdentifier(name); err != nil {
		return "", err
	}
	return "`" + name + "`", nil
}

// NativePasswordHash is the mysql_native_password hash of pw, as PASSWORD() computes it:
// "*" + upper(hex(sha1(sha1(pw)))). An account created with IDENTIFIED BY PASSWORD and this
// hash keeps the password itself out of the SQL text, the binary log and the query logs.
func NativePasswordHash(pw string) string {
	h1 := sha1.Sum([]byte(pw))
	h2 := sha1.Sum(h1[:])
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}
