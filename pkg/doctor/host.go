package doctor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/redact"
)

// host is what the checks share: one connection to the EMR's database, the journal, the plan
// (for its undoers' read-only Holds).
type host struct {
	ctx     context.Context
	env     Env
	profile string
	entries []journal.Entry
	jErr    error
	db      *sql.DB
	dbName  string // the EMR's database (OpenEMR: sqlconf.php's)
	dbErr   error
	plan    *plan.Plan
}

func newHost(ctx context.Context, env Env, profile string) *host {
	h := &host{ctx: ctx, env: env, profile: profile}
	h.entries, h.jErr = journal.Read(env.Config.Paths.StateDir)
	cfg := env.Config
	cfg.Profile = profile
	dbc, err := plan.EMRDatabase(cfg, env.Host)
	h.dbName = dbc.Name
	if err == nil {
		h.db, err = mariadb.Open(ctx, dbc)
	}
	h.dbErr = err
	h.plan, _ = plan.New(cfg, env.Host, env.Version)
	return h
}

func (h *host) close() {
	if h.db != nil {
		h.db.Close()
	}
	if h.plan != nil {
		h.plan.Close()
	}
}

// skipped is a check that could not run, and why; permission problems name the fix.
func skipped(id, title, safeguard string, err error) Check {
	finding := redact.Error(err)
	fix := ""
	if errors.Is(err, fs.ErrPermission) || os.Geteuid() != 0 && strings.Contains(strings.ToLower(finding), "denied") {
		fix = "run emrkit doctor as root to check this"
	}
	return Check{ID: id, Title: title, Status: Skip, Finding: finding, Fix: fix, Safeguard: safeguard}
}

func check(id, title, safeguard string, ok bool, pass, fail, fix string) Check {
	if ok {
		return Check{ID: id, Title: title, Status: Pass, Finding: pass, Safeguard: safeguard}
	}
	return Check{ID: id, Title: title, Status: Fail, Finding: fail, Fix: fix, Safeguard: safeguard}
}

// dbCheck runs f with the EMR's database, or skips when it cannot be reached.
func (h *host) dbCheck(id, title, safeguard string, f func(*sql.DB) Check) Check {
	if h.dbErr != nil {
		return skipped(id, title, safeguard, fmt.Errorf("the EMR's database cannot be read: %v", h.dbErr))
	}
	return f(h.db)
}
