// Package mariadbtest runs a private MariaDB server for tests, in its own temporary
// directory with its own socket and no network listener, so tests exercise a real server
// (real auth, real InnoDB) without ever touching the host's /var/lib/mysql or /run/mysqld.
package mariadbtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

// serverOptions keep a test server small and fast to start, and mirror the character set
// Debian's /etc/mysql/mariadb.conf.d/50-server.cnf gives the production server (which
// --no-defaults would otherwise drop). Each server needs its own tmpdir: at startup
// mariadbd deletes every #sql* file in its tmpdir, which in a shared /tmp includes the
// temporary tables of servers other tests are still bootstrapping.
func serverOptions(dir string) []string {
	return []string{
		"--tmpdir=" + filepath.Join(dir, "tmp"),
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=16M",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
	}
}

// Server is one private mariadbd. Root logs in over Socket with no password.
type Server struct {
	Socket string
	// Port is the TCP port on 127.0.0.1 when Options.Port asked for one, else 0.
	Port int

	dir      string
	errorLog string
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd.Wait returns
	stopOnce sync.Once
}

// Options change how StartWith runs the server.
type Options struct {
	// Port, when not 0, makes the server listen on 127.0.0.1:Port as well as its socket
	// (replication, users limited to host 127.0.0.1).
	Port int
	// Args are more mariadbd options (--log-bin, --server-id=2, ...).
	Args []string
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now, for Options.Port
// and for servers a test starts itself.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mariadbtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start initialises a fresh data directory and starts mariadbd on it, returning once the
// server accepts logins. t.Cleanup stops the server and removes the directory. Missing
// server binaries fail the test rather than skip it: a skipped database test is a test
// that silently never runs.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	mariadbd := lookPath(t, "mariadbd")
	installDB := lookPath(t, "mariadb-install-db")

	// Not t.TempDir: its long path would push the socket past the 108-byte limit.
	dir, err := os.MkdirTemp("/tmp", "emrkit-mdb-")
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	s := &Server{
		Socket:   filepath.Join(dir, "mysqld.sock"),
		Port:     o.Port,
		dir:      dir,
		errorLog: filepath.Join(dir, "error.log"),
		exited:   make(chan struct{}),
	}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	datadir := filepath.Join(dir, "data")
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}

	// --user is honoured only for root, where mariadbd refuses to start without it.
	var userOpt []string
	if os.Geteuid() == 0 {
		userOpt = []string{"--user=root"}
	}
	install := exec.Command(installDB, append(append([]string{
		"--no-defaults",
		"--auth-root-authentication-method=normal", // root@localhost, empty password
		"--skip-test-db",
		"--skip-name-resolve",
		"--datadir=" + datadir,
	}, userOpt...), serverOptions(dir)...)...)
	if out, err := install.CombinedOutput(); err != nil {
		// The cause comes first; the advice mariadb-install-db appends fills the end.
		t.Fatalf("mariadbtest: mariadb-install-db: %v\n%s", err, out)
	}

	network := []string{"--skip-networking"}
	if o.Port != 0 {
		network = []string{"--port=" + strconv.Itoa(o.Port), "--bind-address=127.0.0.1"}
	}
	args := []string{
		"--no-defaults",
		"--datadir=" + datadir,
		"--socket=" + s.Socket,
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--log-error=" + s.errorLog,
	}
	args = append(append(append(append(args, network...), userOpt...), serverOptions(dir)...), o.Args...)
	s.cmd = exec.Command(mariadbd, args...)
	// If the test binary dies without running cleanups (a go test timeout panics), take
	// the server with it rather than leave it running. (The signal follows the forking OS
	// thread, which Go keeps alive unless a goroutine exits while locked to it.)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("mariadbtest: start mariadbd: %v", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()

	deadline := time.Now().Add(startTimeout)
	cfg := s.config("")
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		db, err := mariadb.Open(ctx, cfg)
		cancel()
		if err == nil {
			db.Close()
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("mariadbtest: mariadbd exited during startup (%v); %s", s.cmd.ProcessState, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("mariadbtest: mariadbd not accepting logins after %v: %v; %s", startTimeout, err, s.logTail())
		}
	}
}

// lookPath also searches the sbin directories, which a non-root PATH often lacks.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s not found; run scripts/deps.sh (as root) first", name)
	return ""
}

// Stop shuts the server down (SIGTERM, then SIGKILL if it lingers), so tests can see how
// emrkit behaves with MariaDB down. It is idempotent; cleanup calls it too.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Dir is the server's own directory (data/, its logs): tests read binary and relay logs there.
func (s *Server) Dir() string { return s.dir }

// Root is a config that reaches database name ("" for none) as root over the socket.
func (s *Server) Root(name string) config.Database { return s.config(name) }

// config points at database name ("" for none) as root over the socket.
func (s *Server) config(name string) config.Database {
	return config.Database{Socket: s.Socket, Port: config.P(3306), Name: name, User: "root"}
}

// CreateDatabase creates database name, which must not exist yet, and returns a config
// that reaches it as root over the socket without a password.
func (s *Server) CreateDatabase(t testing.TB, name string) config.Database {
	t.Helper()
	q, err := mariadb.QuoteIdentifier(name)
	if err != nil {
		t.Fatalf("mariadbtest: database name: %v", err)
	}
	db := s.open(t, "")
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), "CREATE DATABASE "+q); err != nil {
		t.Fatalf("mariadbtest: create database %s: %v", name, err)
	}
	return s.config(name)
}

// DB opens database name ("" for none) as root; t.Cleanup closes it.
func (s *Server) DB(t testing.TB, name string) *sql.DB {
	t.Helper()
	db := s.open(t, name)
	t.Cleanup(func() { db.Close() })
	return db
}

// open is DB for the helpers' own short-lived use, which close it at once rather than
// holding a connection per call until the test ends.
func (s *Server) open(t testing.TB, name string) *sql.DB {
	t.Helper()
	db, err := mariadb.Open(t.Context(), s.config(name))
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	return db
}

// Checksum returns CHECKSUM TABLE's value for db.table, a cheap way to assert that a table's
// rows came back unchanged.
func (s *Server) Checksum(t testing.TB, db, table string) string {
	t.Helper()
	qd, err := mariadb.QuoteIdentifier(db)
	if err != nil {
		t.Fatalf("mariadbtest: checksum: %v", err)
	}
	qt, err := mariadb.QuoteIdentifier(table)
	if err != nil {
		t.Fatalf("mariadbtest: checksum: %v", err)
	}
	conn := s.open(t, "")
	defer conn.Close()
	var name string
	var sum sql.NullInt64
	if err := conn.QueryRowContext(t.Context(), "CHECKSUM TABLE "+qd+"."+qt).Scan(&name, &sum); err != nil {
		t.Fatalf("mariadbtest: checksum %s.%s: %v", db, table, err)
	}
	if !sum.Valid { // CHECKSUM TABLE reports NULL, with a warning, for a missing table
		t.Fatalf("mariadbtest: checksum %s.%s: no such table", db, table)
	}
	return strconv.FormatInt(sum.Int64, 10)
}

// Dump returns mariadb-dump's output for db (all tables, or the ones named), stable across
// runs so that two dumps can be compared as text.
func (s *Server) Dump(t testing.TB, db string, tables ...string) string {
	t.Helper()
	dump := lookPath(t, "mariadb-dump")
	for _, name := range append([]string{db}, tables...) {
		if err := mariadb.ValidIdentifier(name); err != nil {
			t.Fatalf("mariadbtest: dump: %v", err)
		}
	}
	args := append([]string{
		"--skip-dump-date", "--skip-comments", "--order-by-primary",
		// One row per INSERT, so a difference shows as a line in a diff.
		"--skip-extended-insert",
		db,
	}, tables...)
	cmd, done, err := mariadb.Command(t.Context(), s.config(""), dump, args...)
	if err != nil {
		t.Fatalf("mariadbtest: dump: %v", err)
	}
	defer done()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mariadbtest: mariadb-dump %s: %v: %s", db, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String()
}

// logTail is the end of the server's error log, for failure messages.
func (s *Server) logTail() string {
	data, err := os.ReadFile(s.errorLog)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "no error log written"
		}
		return fmt.Sprintf("error log: %v", err)
	}
	return "error log " + s.errorLog + " ends:\n" + tail(data, 20)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// OptionFile writes db's client option file (password included) into a test's temp dir, for
// tests that run a client from a shell pipeline, where emrkit's inherited descriptor
// (mariadb.Command) cannot reach.
func OptionFile(t testing.TB, db config.Database) string {
	t.Helper()
	text, err := mariadb.OptionText(db)
	if err != nil {
		t.Fatalf("mariadbtest: option file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "client.cnf")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
