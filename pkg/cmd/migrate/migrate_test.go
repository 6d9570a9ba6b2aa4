package migrate_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	cmdmigrate "github.com/emrkit/emrkit/pkg/cmd/migrate"
	"github.com/emrkit/emrkit/pkg/cmd/root"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/plan"
)

type env struct {
	t      *testing.T
	srv    *mariadbtest.Server
	db     *sql.DB
	name   string
	dir    string
	config string
}

func newEnv(t *testing.T, srv *mariadbtest.Server, name string, rows int, migrations string) *env {
	t.Helper()
	cfg := srv.CreateDatabase(t, name)
	db := srv.DB(t, name)
	if rows > 0 {
		demofixture.Create(t, db, rows, 3)
		oscarfixture.Create(t, db, true)
	}
	dir := t.TempDir()
	props := filepath.Join(dir, "oscar.properties")
	os.WriteFile(props, []byte("TOTP=1\n"), 0o644)
	e := &env{t: t, srv: srv, db: db, name: name, dir: dir, config: filepath.Join(dir, "emrkit.yaml")}
	yaml := fmt.Sprintf("database: {socket: %s, name: %s}\noscar: {properties: %s}\ntotp: {users: []}\npgp: {mode: none}\n"+
		"firewall: {enable: false}\nmigrations: [%s]\npaths: {state_dir: %s/state, backup_dir: %s/backups, cron_file: %s/cron}\n",
		cfg.Socket, name, props, migrations, dir, dir, dir)
	os.WriteFile(e.config, []byte(yaml), 0o600)
	return e
}

// run executes `emrkit ARGS...` through the real command tree, without a terminal.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{Version: "0.4.0-1", In: strings.NewReader(""), Out: &out, Err: &errb, Host: plan.Host{ConfigPath: e.config}}
	cmd := root.New(f)
	cmd.SetArgs(append([]string{"--config", e.config}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	if err != nil && err.Error() != "" {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), cmdutil.ExitCode(err)
}

func (e *env) entry(id string) (journal.Entry, bool) {
	entries, _ := journal.Read(filepath.Join(e.dir, "state"))
	for _, x := range entries {
		if x.ID == id {
			return x, true
		}
	}
	return journal.Entry{}, false
}

func TestUpListApplyDown(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_15", 5000, "")
	before := srv.Dump(t, e.name, "demographic")

	out, errs, code := e.run("migrate", "list")
	if code != 0 || !strings.Contains(out, "middle-names") || !strings.Contains(out, "not run") {
		t.Fatalf("list: %d %q %q", code, out, errs)
	}
	out, _, code = e.run("migrate", "up", "middle-names", "--dry-run")
	if code != 0 || !strings.Contains(out, "middle-names would change ") || !strings.Contains(out, "(dry run: nothing changed)") {
		t.Fatalf("dry run: %d %q", code, out)
	}
	if srv.Dump(t, e.name, "demographic") != before {
		t.Fatal("dry run changed the table")
	}

	out, errs, code = e.run("migrate", "up", "middle-names")
	if code != 0 || !strings.Contains(out, "middle-names is done on oscar_15.demographic: ") ||
		!strings.Contains(errs, "middle-names: 5,000/5,000 rows (100%)") || !strings.Contains(errs, "rows' first_name whole") {
		t.Fatalf("up: %d %q %q", code, out, errs)
	}
	x, ok := e.entry("migrate.middle-names:oscar_15.demographic")
	if !ok || x.State != journal.Done || x.Origin != journal.OriginCommand || x.Since != "0.4.0" {
		t.Fatalf("journal: %+v", x)
	}
	out, _, code = e.run("migrate", "up", "middle-names")
	if code != 0 || !strings.Contains(out, "middle-names was already done") {
		t.Fatalf("second up: %d %q", code, out)
	}
	after := srv.Dump(t, e.name, "demographic")

	// apply does not undo a migration the admin ran by hand, though config does not list it.
	if _, errs, code = e.run("apply"); code != 0 {
		t.Fatalf("apply: %d %q", code, errs)
	}
	if srv.Dump(t, e.name, "demographic") != after {
		t.Fatal("apply reverted a migration run by hand")
	}

	out, _, code = e.run("migrate", "list", "--json")
	var list []cmdmigrate.Status
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].State != "done" || list[0].Changed == 0 ||
		list[0].Journal != "done" || list[0].Origin != "command" || list[1].State != "not run" || len(list[0].Report) != 1 {
		t.Fatalf("list --json: %d %s", code, out)
	}

	out, _, code = e.run("migrate", "down", "middle-names", "--dry-run")
	if code != 0 || !strings.Contains(out, "would be undone") || srv.Dump(t, e.name, "demographic") != after {
		t.Fatalf("down --dry-run: %d %q", code, out)
	}
	out, errs, code = e.run("migrate", "down", "middle-names")
	if code != 0 || !strings.Contains(out, "middle-names is undone on oscar_15.demographic") || !strings.Contains(errs, "restored ") {
		t.Fatalf("down: %d %q %q", code, out, errs)
	}
	if srv.Dump(t, e.name, "demographic") != before {
		t.Fatal("down did not restore the original table")
	}
	backups, _ := filepath.Glob(filepath.Join(e.dir, "backups", "oscar_15-before-migrate-down-middle-names-*.sql.gz"))
	if len(backups) != 1 {
		t.Fatalf("backup before down: %v", backups)
	}
	if out, _, code = e.run("migrate", "down", "middle-names"); code != 0 || !strings.Contains(out, "not applied on oscar_15.demographic; nothing to undo") {
		t.Fatalf("second down: %d %q", code, out)
	}
}

// TestPlanOwnsConfiguredMigrations: a migration in config.Migrations runs on apply; taken
// out of the list, the next apply undoes it (after a backup); `migrate down` of a configured
// one warns that apply will run it again.
func TestPlanOwnsConfiguredMigrations(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_15", 3000, "roster-enrolled-to")
	before := srv.Dump(t, e.name, "demographic")
	// Until the plan wires migrate.Steps, `migrate up` stands in for apply's run of it.
	if _, errs, code := e.run("migrate", "up", "roster-enrolled-to"); code != 0 {
		t.Fatalf("up: %s", errs)
	}
	_, errs, code := e.run("migrate", "down", "roster-enrolled-to")
	if code != 0 || !strings.Contains(errs, "NOTE: roster-enrolled-to is in migrations (debconf emrkit/migrations), so `emrkit apply` runs it again") {
		t.Fatalf("down of a configured migration: %d %q", code, errs)
	}
	if srv.Dump(t, e.name, "demographic") != before {
		t.Fatal("down did not restore")
	}
}

func TestBadInput(t *testing.T) {
	srv := mariadbtest.Start(t)
	e := newEnv(t, srv, "oscar_15", 500, "")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate", "up", "nope"}, 2, `unknown migration "nope"; known: middle-names, roster-enrolled-to`},
		{[]string{"migrate", "down", "nope"}, 2, `unknown migration "nope"`},
		{[]string{"migrate", "up"}, 2, "accepts 1 arg"},
		{[]string{"migrate", "sideways"}, 2, `unknown command "sideways" for "emrkit migrate"`},
		{[]string{"migrate", "up", "middle-names", "--batch", "0"}, 2, `invalid argument "0" for "--batch" flag: rows per transaction must be 1..1000000`},
		{[]string{"migrate", "up", "middle-names", "--batch", "-5"}, 2, `invalid argument "-5" for "--batch" flag: rows per transaction must be 1..1000000`},
		{[]string{"migrate", "down", "middle-names", "--batch=1000001"}, 2, `invalid argument "1000001" for "--batch" flag: rows per transaction must be 1..1000000`},
		{[]string{"migrate", "up", "middle-names", "--batch", "99999999999999999999"}, 2, `"--batch" flag: rows per transaction must be 1..1000000`},
		{[]string{"migrate", "up", "middle-names", "--workers", "0"}, 2, `invalid argument "0" for "--workers" flag: connections at once must be 1..16`},
		{[]string{"migrate", "up", "middle-names", "--workers", "0x"}, 2, `invalid argument "0x" for "--workers" flag: connections at once must be 1..16`},
		{[]string{"migrate", "up", "middle-names", "--workers", "99"}, 2, `invalid argument "99" for "--workers" flag: connections at once must be 1..16`},
		{[]string{"migrate", "down", "middle-names", "--workers", "-1"}, 2, `invalid argument "-1" for "--workers" flag: connections at once must be 1..16`},
		{[]string{"migrate", "up", "middle-names", "--frobnicate"}, 2, "unknown flag"},
	} {
		_, errs, code := e.run(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: %d %q, want %d %q", c.args, code, errs, c.code, c.want)
		}
	}

	// The bounds themselves are accepted, and --help shows the real defaults.
	if out, errs, code := e.run("migrate", "up", "middle-names", "--dry-run", "--batch", "1000000", "--workers", "16"); code != 0 {
		t.Errorf("--batch 1000000 --workers 16: %d %q %q", code, out, errs)
	}
	if out, _, code := e.run("migrate", "down", "--help"); code != 0 || !strings.Contains(out, "1..1000000 (default 10000)") || !strings.Contains(out, "1..16 (default 2)") {
		t.Errorf("help does not show the ranges and defaults: %q", out)
	}

	// The wrong database: no demographic table. Nothing journaled, nothing created.
	w := newEnv(t, srv, "not_oscar", 0, "")
	if _, errs, code := w.run("migrate", "up", "middle-names"); code != 1 || !strings.Contains(errs, "database not_oscar has no demographic table") {
		t.Fatalf("no table: %d %q", code, errs)
	}
	if _, ok := w.entry("migrate.middle-names:not_oscar.demographic"); ok {
		t.Fatal("journaled against the wrong database")
	}

	// MariaDB down: a clear error, exit 1, nothing journaled.
	srv.Stop()
	for _, args := range [][]string{{"migrate", "up", "roster-enrolled-to"}, {"migrate", "down", "roster-enrolled-to"}, {"migrate", "list"}} {
		out, errs, code := e.run(args...)
		if code != 1 || !strings.Contains(errs, "cannot reach the database server") {
			t.Errorf("%v with MariaDB down: %d %q %q", args, code, out, errs)
		}
		if args[1] == "list" && !strings.Contains(out, "unknown") {
			t.Errorf("list with MariaDB down should still show the journal's view: %q", out)
		}
	}
	entries, _ := journal.Read(filepath.Join(e.dir, "state"))
	if slices.ContainsFunc(entries, func(x journal.Entry) bool { return strings.HasPrefix(x.Kind, "migrate.") }) {
		t.Fatalf("journaled with MariaDB down: %+v", entries)
	}
}
