package mariadb_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
)

// A password with everything an option file or SQL literal could mangle.
const nastyPassword = `pa"ss'wo\rd # x `

func TestOpenQuery(t *testing.T) {
	t.Parallel()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_15")
	db, err := mariadb.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE demographic (demographic_no INT PRIMARY KEY, last_name VARCHAR(30), updated DATETIME)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "INSERT INTO demographic VALUES (1, 'O''Brien', '2024-01-02 03:04:05')"); err != nil {
		t.Fatal(err)
	}
	var name string
	var updated time.Time // ParseTime is on
	if err := db.QueryRowContext(t.Context(), "SELECT last_name, updated FROM demographic WHERE demographic_no = ?", 1).Scan(&name, &updated); err != nil {
		t.Fatal(err)
	}
	if name != "O'Brien" || updated.Year() != 2024 {
		t.Errorf("got %q %v", name, updated)
	}
	if _, err := db.ExecContext(t.Context(), "SELECT 1; SELECT 2"); err == nil {
		t.Error("a multi-statement query ran; MultiStatements must be off")
	}

	sum := srv.Checksum(t, "oscar_15", "demographic")
	dump := srv.Dump(t, "oscar_15", "demographic")
	if !strings.Contains(dump, "CREATE TABLE `demographic`") || !strings.Contains(dump, `'O\'Brien'`) {
		t.Errorf("dump lacks the table or its row:\n%s", dump)
	}
	if _, err := db.ExecContext(t.Context(), "UPDATE demographic SET last_name = 'X'"); err != nil {
		t.Fatal(err)
	}
	if srv.Checksum(t, "oscar_15", "demographic") == sum || srv.Dump(t, "oscar_15") == dump {
		t.Error("checksum or dump did not change after an update")
	}

	cfg.Name = "oscar_16"
	_, err = mariadb.Open(t.Context(), cfg)
	if !errors.Is(err, mariadb.ErrNoDatabase) || !strings.Contains(err.Error(), `database "oscar_16" does not exist`) {
		t.Errorf("wrong database: got %v", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_15")
	db := srv.DB(t, "oscar_15") // an open pool must not keep the stop from finishing
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	_, err := mariadb.Open(t.Context(), cfg)
	if !errors.Is(err, mariadb.ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "cannot reach the database server at "+cfg.Socket) ||
		!strings.Contains(msg, "systemctl start mariadb") {
		t.Errorf("message: %q", msg)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v to notice the server is down", d)
	}
	t.Log(msg)

	// A socket path with nothing behind it reads the same.
	cfg.Socket = filepath.Join(t.TempDir(), "none.sock")
	if _, err := mariadb.Open(t.Context(), cfg); !errors.Is(err, mariadb.ErrUnreachable) {
		t.Errorf("missing socket: got %v", err)
	}
}

func TestPasswordAndDefaultsFile(t *testing.T) {
	t.Parallel()
	srv := mariadbtest.Start(t)
	root := srv.DB(t, "")
	srv.CreateDatabase(t, "oscar_15")
	lit := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(nastyPassword)
	for _, q := range []string{
		"CREATE USER 'emrkit'@'localhost' IDENTIFIED BY '" + lit + "'",
		"GRANT SELECT ON oscar_15.* TO 'emrkit'@'localhost'",
	} {
		if _, err := root.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(nastyPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Database{Socket: srv.Socket, Port: config.P(3306), Name: "oscar_15", User: "emrkit", PasswordFile: pwFile}

	db, err := mariadb.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	client, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatal("mariadb not found; run scripts/deps.sh (as root) first")
	}
	before := leftovers(t, dir, os.TempDir())
	cmd, done, err := mariadb.Command(t.Context(), cfg, client, "-N", "-e", "SELECT CURRENT_USER()")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	done()
	if err != nil || strings.TrimSpace(string(out)) != "emrkit@localhost" {
		t.Fatalf("mariadb client with the inherited option file: %v: %s", err, out)
	}
	if strings.Contains(strings.Join(cmd.Args, " "), nastyPassword) {
		t.Fatalf("the password is on the command line: %q", cmd.Args)
	}
	if after := leftovers(t, dir, os.TempDir()); after != before {
		t.Fatalf("the client's option file left a file: before %q, after %q", before, after)
	}

	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.PasswordFile = wrong
	if _, err := mariadb.Open(t.Context(), bad); !errors.Is(err, mariadb.ErrAccessDenied) ||
		!strings.Contains(err.Error(), `access denied for user "emrkit"`) {
		t.Errorf("wrong password: got %v", err)
	}
}

func TestPasswordFileWorldReadable(t *testing.T) {
	t.Parallel()
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pwFile, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	// No server needed: the file is refused before any connection is tried.
	cfg := config.Database{Socket: "/nonexistent/mysqld.sock", Port: config.P(3306), Name: "oscar_15", User: "root", PasswordFile: pwFile}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := mariadb.Open(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+pwFile) || errors.Is(err, mariadb.ErrUnreachable) {
		t.Errorf("Open: got %v, want a refusal naming chmod 600", err)
	}
	if _, _, err := mariadb.Command(t.Context(), cfg, "mariadb"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Command: got %v, want a refusal naming chmod 600", err)
	}
}

func TestValidIdentifier(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a'b", "a;b", "", strings.Repeat("a", 65), "a b", "a`b", "a.b", "é"} {
		if err := mariadb.ValidIdentifier(name); err == nil {
			t.Errorf("ValidIdentifier(%q) accepted", name)
		}
		if _, err := mariadb.QuoteIdentifier(name); err == nil {
			t.Errorf("QuoteIdentifier(%q) accepted", name)
		}
	}
	for _, name := range []string{"oscar_15", "demographic", "a$b", strings.Repeat("a", 64)} {
		if err := mariadb.ValidIdentifier(name); err != nil {
			t.Errorf("ValidIdentifier(%q): %v", name, err)
		}
	}
	if q, err := mariadb.QuoteIdentifier("oscar_15"); err != nil || q != "`oscar_15`" {
		t.Errorf("QuoteIdentifier: %q %v", q, err)
	}
}

func TestNativePasswordHash(t *testing.T) {
	// As the server computes it: CREATE USER ... IDENTIFIED BY 'pw' stores this.
	if got := mariadb.NativePasswordHash("pw"); got != "*D821809F681A40A6E379B50D0463EFAE20BDD122" {
		t.Fatalf("NativePasswordHash(pw) = %s", got)
	}
}

// leftovers lists the files in dirs that look like a client option file.
func leftovers(t *testing.T, dirs ...string) string {
	var out []string
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.Contains(e.Name(), ".cnf") {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return strings.Join(out, " ")
}
