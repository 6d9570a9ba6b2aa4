package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

// fixture is one database holding a demographic table, with a journal of its own.
type fixture struct {
	t      testing.TB
	srv    *mariadbtest.Server
	name   string
	cfg    config.Database
	db     *sql.DB
	state  string
	j      *journal.Journal
	out    *bytes.Buffer // progress and reports
	backup string        // backup dir
}

// newFixture creates database name holding a copy of from's demographic table ("" for a
// freshly generated table of rows rows).
func newFixture(t testing.TB, srv *mariadbtest.Server, name, from string, rows int) *fixture {
	t.Helper()
	cfg := srv.CreateDatabase(t, name)
	db := srv.DB(t, name)
	if from == "" {
		demofixture.Create(t, db, rows, 1)
	} else if err := demofixture.Copy(t.Context(), db, from, name); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	j, err := journal.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &fixture{t: t, srv: srv, name: name, cfg: cfg, db: db, state: state, j: j, out: &bytes.Buffer{},
		backup: filepath.Join(state, "backups")}
}

func (f *fixture) env() Env {
	return Env{DB: Static(f.db), Database: f.name, Progress: f.out, Backup: f.backupFunc()}
}

func (f *fixture) backupFunc() BackupFunc {
	return func(ctx context.Context, label string, tables ...string) (string, error) {
		return backup.Dump(ctx, f.cfg, f.backup, label, tables...)
	}
}

func (f *fixture) runner(env Env) *step.Runner {
	return &step.Runner{Journal: f.j, Undoers: Undoers(env), Out: f.out, Origin: journal.OriginCommand}
}

// up runs migration name through the runner, as `emrkit migrate up` does.
func (f *fixture) up(env Env, name string) (step.Report, error) {
	f.t.Helper()
	s, err := NewStep(env, name, "0.4.0")
	if err != nil {
		f.t.Fatal(err)
	}
	return f.runner(env).Run(context.Background(), []step.Step{s})
}

// down reverts migration name's journal entry, as `emrkit migrate down` does.
func (f *fixture) down(env Env, name string) (step.Report, error) {
	f.t.Helper()
	s, err := NewStep(env, name, "0.4.0")
	if err != nil {
		f.t.Fatal(err)
	}
	return f.runner(env).Revert(context.Background(), func(e journal.Entry) bool { return e.ID == s.ID() })
}

func (f *fixture) dump() string {
	f.t.Helper()
	return f.srv.Dump(f.t, f.name, "demographic")
}

func (f *fixture) tables() []string {
	f.t.Helper()
	rows, err := f.db.Query("SHOW TABLES")
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

// row is a demographic row: every column as text, nil for NULL.
type row []*string

// table reads every row of db's demographic table, by key, with the column names.
func table(t testing.TB, db *sql.DB) (map[int64]row, []string) {
	t.Helper()
	rows, err := db.Query("SELECT * FROM demographic ORDER BY demographic_no")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[int64]row{}
	for rows.Next() {
		raw := make([]sql.RawBytes, len(cols))
		dest := make([]any, len(cols))
		for i := range raw {
			dest[i] = &raw[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		r := make(row, len(cols))
		for i, b := range raw {
			if b != nil {
				s := string(b)
				r[i] = &s
			}
		}
		var k int64
		fmt.Sscan(*r[0], &k)
		out[k] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, cols
}

func col(cols []string, name string) int {
	for i, c := range cols {
		if strings.EqualFold(c, name) {
			return i
		}
	}
	panic("no column " + name)
}

func str(p *string) string {
	if p == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *p)
}

func eq(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// runSeed runs the seed's statements with the mariadb client, as a clinic's admin would.
func runSeed(t testing.TB, f *fixture, stmts []string) {
	t.Helper()
	cmd, done, err := mariadb.Command(t.Context(), f.cfg, "mariadb", f.name, "-e", strings.Join(stmts, ";\n")+";")
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seed SQL: %v: %s", err, out)
	}
}
