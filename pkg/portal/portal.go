// Package portal composes an offsite patient portal's way into an OpenEMR server from
// portal.* (since 0.6.0): the portal's own MariaDB user (pkg/portaldb), the reverse SSH
// tunnel the clinic opens to the portal host (pkg/tunnel) and, optionally, the filtered
// replica of the portal's tables (pkg/replica). It owns the order of those steps and what
// `emrkit portal status` reports; each piece owns its own undo.
//
// This is for offsite portals and replicas: OpenEMR's own onsite portal runs inside
// OpenEMR's PHP application with OpenEMR's database account (openemr-facts.md section 3),
// so a restricted user cannot serve it.
package portal

import (
	"maps"
	"path/filepath"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/portaldb"
	"github.com/emrkit/emrkit/pkg/replica"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/tunnel"
)

// Since is the release that introduced the portal steps.
const Since = "0.6.0"

// InstallKind marks the one deferred step that stands for the portal's steps while OpenEMR
// is not installed.
const InstallKind = "portal.install"

// Env is the host as the portal steps see it; tests point it elsewhere.
type Env struct {
	// PasswordFile keeps the portal database user's generated password (root, 0600).
	PasswordFile string
	Tunnel       tunnel.Env
	Replica      replica.Env
}

// DefaultEnv is a Debian host.
func DefaultEnv() Env {
	return Env{
		PasswordFile: filepath.Join(filepath.Dir(config.DefaultPath), "portal-db.password"),
		Tunnel:       tunnel.DefaultEnv(),
		Replica:      replica.DefaultEnv(),
	}
}

// Tunnel is the tunnel portal.tunnel describes: the portal host reaches OpenEMR's HTTPS
// port on its own localhost, and the replica's port too when there is one.
func Tunnel(p config.Portal) tunnel.Tunnel {
	t := tunnel.Tunnel{Host: p.Tunnel.Host, Port: p.Tunnel.SSHPort(), User: p.Tunnel.User, HostKey: p.Tunnel.HostKey,
		Forwards: []tunnel.Forward{{RemotePort: p.Tunnel.Remote(), LocalPort: p.Tunnel.Local()}}}
	if p.Replica.Enable {
		t.Forwards = append(t.Forwards, tunnel.Forward{RemotePort: p.Replica.Remote(), LocalPort: p.Replica.Local()})
	}
	return t
}

// Replica is the filtered replica of p's tables of database, fed by db.
func Replica(p config.Portal, db *mariadb.Shared, database string) replica.Replica {
	return replica.Replica{Primary: db, Database: database, Tables: p.TableNames(), Port: p.Replica.Local(), RemotePort: p.Replica.Remote()}
}

// Steps are the portal's steps in run order: the database user first (it needs nothing
// else), then the replica (its binary log may wait for a MariaDB restart), then the tunnel,
// which forwards to both. db reaches OpenEMR's database, whose name is database.
func Steps(cfg config.Config, db *mariadb.Shared, database string, env Env, since string) ([]step.Step, error) {
	p := cfg.Portal
	if !p.Enable {
		return nil, nil
	}
	steps := []step.Step{portaldb.UserStep{DB: db, Database: database, User: p.User(), Host: p.Host(),
		Tables: p.TableNames(), PasswordFile: env.PasswordFile, SinceVersion: since}}
	if p.Replica.Enable {
		r, err := replica.Steps(Replica(p, db, database), env.Replica, since)
		if err != nil {
			return nil, err
		}
		steps = append(steps, r...)
	}
	if p.Tunnel.Host != "" {
		t, err := tunnel.Steps(Tunnel(p), env.Tunnel, since)
		if err != nil {
			return nil, err
		}
		steps = append(steps, t...)
	}
	return steps, nil
}

// Undoers knows every kind the portal steps journal; db reaches the clinic's MariaDB.
func Undoers(env Env, db *mariadb.Shared) step.Registry {
	r := portaldb.Undoers(db)
	maps.Copy(r, tunnel.Undoers(env.Tunnel))
	maps.Copy(r, replica.Undoers(env.Replica, db))
	return r
}
