package replica

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/openemrfixture"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

// requireHost fails (never skips) when the test cannot run here: it needs root (the
// intermediate runs as mysql, files are chowned) and MariaDB's server and client tools.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the portal replica tests run as root (they start mariadbd as mysql and chown its files)")
	}
	for _, tool := range [][2]string{
		{"mariadbd", "mariadb-server"}, {"mariadb-install-db", "mariadb-server"},
		{"mariadb", "mariadb-client"}, {"mariadb-dump", "mariadb-client"}, {"mariadb-binlog", "mariadb-client"},
	} {
		if _, err := lookTool(tool[0], tool[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := mysqlUser(); err != nil {
		t.Fatalf("%v: install mariadb-server", err)
	}
}

// testEnv is an Env under one private directory that user mysql can traverse. systemd is
// reported as not running: the tests start the intermediate themselves, with StartArgs.
func testEnv(t *testing.T) Env {
	t.Helper()
	base, err := os.MkdirTemp("/tmp", "emrkit-rep-") // short: the socket path has a limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc", "conf.d", "systemd"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// What the unit's RuntimeDirectory= gives the server under systemd.
	run := filepath.Join(base, "run")
	uid, gid, err := mysqlUser()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(run, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, uid, gid); err != nil {
		t.Fatal(err)
	}
	return Env{
		PrimaryDropIn:  filepath.Join(base, "conf.d", "60-emrkit-portal-binlog.cnf"),
		ConfigFile:     filepath.Join(base, "etc", "portal-replica.cnf"),
		DataDir:        filepath.Join(base, "lib"),
		RunDir:         run,
		UnitDir:        filepath.Join(base, "systemd"),
		PasswordDir:    filepath.Join(base, "etc"),
		SystemdRunning: func() bool { return false },
	}
}

// serverArgs turns the first [mariadbd] section of an option file's text into command-line
// options, so test servers run exactly the settings emrkit writes or prints.
func serverArgs(t *testing.T, text string) []string {
	t.Helper()
	var args []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "[mariadbd]":
			in = true
			continue
		case !in || strings.HasPrefix(line, "#"):
			continue
		case line == "" || strings.HasPrefix(line, "["):
			if len(args) == 0 {
				t.Fatalf("no options in the [mariadbd] section of:\n%s", text)
			}
			return args
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			args = append(args, "--"+line)
			continue
		}
		args = append(args, "--"+strings.TrimSpace(k)+"="+strings.TrimSpace(v))
	}
	if len(args) == 0 {
		t.Fatalf("no [mariadbd] section in:\n%s", text)
	}
	return args
}

// loadPortalFixture creates database openemr on srv with the portal fixture's tables.
func loadPortalFixture(t *testing.T, srv *mariadbtest.Server) config.Database {
	t.Helper()
	cfg := srv.CreateDatabase(t, "openemr")
	db := srv.DB(t, "openemr")
	for _, stmt := range strings.Split(openemrfixture.PortalSQL, ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := db.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("fixture: %v\n%s", err, stmt)
		}
	}
	return cfg
}

type runEnv struct {
	j   *journal.Journal
	dir string
	out bytes.Buffer
	reg step.Registry
}

func newRun(t *testing.T, env Env, primary *mariadb.Shared) *runEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	j, err := journal.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &runEnv{j: j, dir: dir, reg: Undoers(env, primary)}
}

func (r *runEnv) runner() *step.Runner {
	return &step.Runner{Journal: r.j, Undoers: r.reg, Out: &r.out}
}

func (r *runEnv) apply(t *testing.T, steps []step.Step) step.Report {
	t.Helper()
	r.out.Reset()
	rep, err := r.runner().Apply(t.Context(), steps)
	t.Logf("apply: %+v\n%s", rep, r.out.String())
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return rep
}

// intermediate is the filtered replica's mariadbd, started as the unit starts it.
type intermediate struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func startIntermediate(t *testing.T, env Env) *intermediate {
	t.Helper()
	uid, gid, err := mysqlUser()
	if err != nil {
		t.Fatal(err)
	}
	args := StartArgs(env)
	cmd := exec.Command(args[0], args[1:]...)
	// User=mysql, as in the unit; the parent's death takes it along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	p := &intermediate{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		db, err := openIntermediate(ctx, env.socket())
		cancel()
		if err == nil {
			db.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("the intermediate exited during startup: %s\n%s", cmd.ProcessState, lastLines(out.String(), 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the intermediate does not answer after 30s: %v", err)
		}
	}
}

func (p *intermediate) waitExit(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("the intermediate still runs %v after revert", within)
	}
}

func scalar[T any](t *testing.T, db *sql.DB, query string, args ...any) T {
	t.Helper()
	var v T
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func exec1(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// globalPriv is the server's accounts and privileges, for comparing before and after.
func globalPriv(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "SELECT User, Host, Priv FROM mysql.global_priv ORDER BY User, Host")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var u, h, p string
		if err := rows.Scan(&u, &h, &p); err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + "@" + h + " " + p + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// binlogText is every binary or relay log file matching glob, decoded as mariadb-binlog -v
// --base64-output=DECODE-ROWS prints it, and raw.
func binlogText(t *testing.T, glob string) (decoded, raw string, files []string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := lookTool("mariadb-binlog", "mariadb-client")
	if err != nil {
		t.Fatal(err)
	}
	var dec, rawb strings.Builder
	for _, f := range files {
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(t.Context(), tool, "--no-defaults", "-v", "--base64-output=DECODE-ROWS", f)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("mariadb-binlog %s: %v: %s", f, err, errb.String())
		}
		dec.WriteString(out.String())
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rawb.Write(b)
	}
	return dec.String(), rawb.String(), files
}
