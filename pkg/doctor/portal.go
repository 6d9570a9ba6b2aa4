package doctor

import (
	"database/sql"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/emrkit/emrkit/pkg/portal"
	"github.com/emrkit/emrkit/pkg/portaldb"
	"github.com/emrkit/emrkit/pkg/replica"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/tunnel"
)

// portalLagWarn is how far behind the portal replica may be before doctor warns.
const portalLagWarn = 300

// portal checks the offsite portal (profile openemr, portal.enable): what reaches the portal
// host and who may read it there.
func (h *host) portal() []Check {
	p := h.env.Config.Portal
	if h.profile != "openemr" || !p.Enable {
		return nil
	}
	out := []Check{h.stepHolds(portaldb.Kind, "portal.db-grants", "the portal's database account has exactly the portal's grants", hipaaAccess)}
	if p.Replica.Enable {
		out = append(out,
			h.dbCheck(binlogID, binlogTitle, hipaaTransmit, h.primaryBinlog),
			h.stepHolds(replica.SourceAccountKind, "portal.replication-grants", "the replication account has REPLICATION SLAVE only", hipaaAccess))
		out = append(out, h.replicaHealth()...)
	}
	if p.Tunnel.Host != "" {
		out = append(out, h.tunnelUp(), h.tunnelKey())
	}
	return out
}

// stepHolds asks the plan's step of kind whether the host holds exactly what it would make
// (read-only: Check never changes anything).
func (h *host) stepHolds(kind, id, title, safeguard string) Check {
	if h.plan == nil {
		return skipped(id, title, safeguard, fmt.Errorf("emrkit's plan cannot be built from the configuration"))
	}
	i := slices.IndexFunc(h.plan.Steps, func(s step.Step) bool { return s.Kind() == kind })
	if i < 0 {
		return skipped(id, title, safeguard, fmt.Errorf("no %s step in this configuration's plan", kind))
	}
	s := h.plan.Steps[i]
	ok, err := s.Check(h.ctx)
	if d, deferred := step.IsDeferred(err); deferred {
		return skipped(id, title, safeguard, fmt.Errorf("%s", d.Reason))
	}
	if err != nil {
		return skipped(id, title, safeguard, err)
	}
	return check(id, title, safeguard, ok, s.Describe(),
		"not as emrkit set it (grants added or removed, or the password changed): "+s.Target(),
		"emrkit apply (puts back exactly the grants and password emrkit set)")
}

const binlogID, binlogTitle = "portal.binlog", "MariaDB writes the ROW binary log the portal replica reads"

func (h *host) primaryBinlog(db *sql.DB) Check {
	ok, state, err := replica.BinlogState(h.ctx, db)
	if err != nil {
		return skipped(binlogID, binlogTitle, hipaaTransmit, err)
	}
	return check(binlogID, binlogTitle, hipaaTransmit, ok, "MariaDB writes "+state,
		"MariaDB runs with "+state+": the replica's table filter cannot work, so the replica waits", replica.RestartHint)
}

// replicaHealth is the portal replica's threads, lag and filter.
func (h *host) replicaHealth() []Check {
	const (
		runID, runTitle       = "portal.replica", "the portal replica replicates (IO and SQL threads running)"
		filterID, filterTitle = "portal.replica-filter", "the portal replica passes on only portal.tables"
	)
	rh, err := replica.ReadHealth(h.ctx, h.env.Host.Portal.Replica)
	if err != nil {
		return []Check{
			check(runID, runTitle, hipaaTransmit, false, "", err.Error(), "emrkit apply; then journalctl -u "+replica.ServiceName+" says why it does not run"),
			skipped(filterID, filterTitle, hipaaAccess, fmt.Errorf("the portal replica cannot be read: %v", err)),
		}
	}
	run := Check{ID: runID, Title: runTitle, Safeguard: hipaaTransmit, Status: Pass,
		Finding: fmt.Sprintf("IO and SQL threads running, %d s behind MariaDB", rh.SecondsBehind)}
	switch {
	case !rh.Running():
		run.Status, run.Finding = Fail, fmt.Sprintf("IO thread running: %v, SQL thread running: %v", rh.IORunning, rh.SQLRunning)
		if rh.Error != "" {
			run.Finding += "; " + rh.Error
		}
		run.Fix = "emrkit apply (re-seeds a replica stopped on an error; START SLAVE on its socket restarts one stopped by hand)"
	case rh.SecondsBehind > portalLagWarn:
		run.Status, run.Finding = Warn, fmt.Sprintf("%d s behind MariaDB (over %d s)", rh.SecondsBehind, portalLagWarn)
		run.Fix = "journalctl -u " + replica.ServiceName + "; a long transaction on MariaDB delays it too"
	}
	want := portal.Replica(h.env.Config.Portal, nil, h.dbName).WantTables()
	filter := check(filterID, filterTitle, hipaaAccess, slices.Equal(rh.DoTables, want),
		"replicate_do_table = "+strings.Join(want, ","),
		fmt.Sprintf("replicate_do_table is %q, portal.tables wants %q", strings.Join(rh.DoTables, ","), strings.Join(want, ",")),
		"emrkit apply (sets the filter and re-seeds the replica)")
	return []Check{run, filter}
}

func (h *host) tunnelUp() Check {
	const id, title = "portal.tunnel", "the portal tunnel is up and holds its forwards"
	env := h.env.Host.Portal.Tunnel
	st, err := tunnel.Status(h.ctx, env)
	if err != nil {
		return skipped(id, title, hipaaTransmit, err)
	}
	// ExitOnForwardFailure: an ssh that keeps running has the portal's end of every forward.
	return check(id, title, hipaaTransmit, st.Up, st.Detail+" (ssh exits when a forward fails, so a running tunnel holds them all)", st.Detail,
		"systemctl status "+tunnel.UnitName+"; the portal's account must hold the line of `emrkit portal authorized-key`")
}

func (h *host) tunnelKey() Check {
	const id, title = "portal.tunnel-key", "the tunnel's private key is readable by its system user only"
	env := h.env.Host.Portal.Tunnel
	fi, err := os.Lstat(env.KeyPath())
	if err != nil {
		return skipped(id, title, hipaaAccess, err)
	}
	u, err := user.Lookup(env.SystemUser)
	if err != nil {
		return check(id, title, hipaaAccess, false, "", fmt.Sprintf("%s exists but its user %s does not", env.KeyPath(), env.SystemUser), "emrkit apply")
	}
	st := fi.Sys().(*syscall.Stat_t)
	finding := fmt.Sprintf("%s %04o owner %d", env.KeyPath(), fi.Mode().Perm(), st.Uid)
	return check(id, title, hipaaAccess, fi.Mode().IsRegular() && fi.Mode().Perm() == 0o600 && strconv.Itoa(int(st.Uid)) == u.Uid,
		finding+" ("+env.SystemUser+")", finding+", want 0600 owned by "+env.SystemUser+" (uid "+u.Uid+")",
		"chown "+env.SystemUser+" "+env.KeyPath()+" && chmod 0600 "+env.KeyPath())
}
