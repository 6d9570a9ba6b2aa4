// Package portal is `emrkit portal authorized-key | replica-config | status`: what the
// portal host's administrator needs from this server, and how the portal's access stands.
// The steps themselves run with `emrkit apply` (portal.* in the configuration).
package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/plan"
	pt "github.com/emrkit/emrkit/pkg/portal"
	"github.com/emrkit/emrkit/pkg/portaldb"
	"github.com/emrkit/emrkit/pkg/replica"
	"github.com/emrkit/emrkit/pkg/tunnel"
)

// Options are a portal subcommand's inputs.
type Options struct {
	F    *cmdutil.Factory
	JSON bool
}

// New returns the `portal` command.
func New(f *cmdutil.Factory) *cobra.Command {
	o := &Options{F: f}
	cmd := &cobra.Command{
		Use:   "portal",
		Short: "Show what an offsite patient portal's host needs, and the portal's access",
		Long: "An offsite patient portal reaches this OpenEMR server through a reverse SSH tunnel that this\n" +
			"server opens, with its own MariaDB user and optionally a replica of its tables only\n" +
			"(portal.* in the configuration; `emrkit apply` sets them up). These commands print the\n" +
			"configuration the portal host needs and report how the tunnel, user and replica stand.",
		Args: cobra.NoArgs,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the tunnel (up or down, since when), the portal user's grants and the replica's lag",
		Args:  cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			return Status(cmd.Context(), o, cfg)
		}),
	}
	status.Flags().BoolVar(&o.JSON, "json", false, "print the status as JSON")
	cmd.AddCommand(&cobra.Command{
		Use:   "authorized-key",
		Short: "Print the line the portal host's authorized_keys needs (one forwarded port, no shell)",
		Long: "Prints this server's tunnel key with the options that restrict it on the portal host:\n" +
			"restrict,port-forwarding,permitlisten=\"localhost:<port>\",command=\"/bin/false\" (OpenSSH 7.8+).\n" +
			"Add it to the authorized_keys of portal.tunnel.user on the portal host.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			if err := needTunnel(cfg); err != nil {
				return err
			}
			line, err := tunnel.AuthorizedKeyLine(f.Host.Portal.Tunnel, pt.Tunnel(cfg.Portal))
			if err != nil {
				return err
			}
			fmt.Fprintln(f.Out, line)
			return nil
		}),
	}, &cobra.Command{
		Use:   "replica-config",
		Short: "Print the offsite replica's MariaDB settings and how to start it",
		Long: "Prints the portal host's read-only replica configuration: its [mariadbd] settings, the\n" +
			"CHANGE MASTER statement that pulls from this server's filtered replica through the tunnel\n" +
			"(it holds the replication password: copy it over a secure channel), and how to seed it.",
		Args: cobra.NoArgs,
		RunE: f.WithConfig(func(cmd *cobra.Command, _ []string, cfg config.Config) error {
			if !cfg.Portal.Enable || !cfg.Portal.Replica.Enable {
				return fmt.Errorf("portal.replica.enable is false: there is no replica to configure (set it, or preseed emrkit/portal-replica, and run `emrkit apply`)")
			}
			dbc, err := plan.EMRDatabase(cfg, f.Host)
			if err != nil {
				return err
			}
			text, err := replica.OffsiteConfig(pt.Replica(cfg.Portal, nil, dbc.Name), f.Host.Portal.Replica)
			if err != nil {
				return err
			}
			_, err = io.WriteString(f.Out, text)
			return err
		}),
	}, status)
	return cmd
}

func needTunnel(cfg config.Config) error {
	if !cfg.Portal.Enable || cfg.Portal.Tunnel.Host == "" {
		return fmt.Errorf("no portal tunnel is configured: set portal.enable and portal.tunnel.host (emrkit/portal, emrkit/portal-host) and run `emrkit apply`")
	}
	return nil
}

// Report is `portal status --json`.
type Report struct {
	Enabled bool          `json:"enabled"`
	Tunnel  *tunnel.State `json:"tunnel,omitempty"`
	User    string        `json:"user"`
	Grants  []string      `json:"grants"`
	Replica *ReplicaState `json:"replica,omitempty"`
	// Problems are what could not be read, one line each.
	Problems []string `json:"problems,omitempty"`
}

// ReplicaState is the local filtered replica as SHOW SLAVE STATUS sees it.
type ReplicaState struct {
	Running bool `json:"running"`
	// LagSeconds is Seconds_Behind_Master, -1 when the replica cannot tell.
	LagSeconds int `json:"lag_seconds"`
}

// Status prints the portal's state; cmdutil.Problem when the portal is enabled and some part
// is not working.
func Status(ctx context.Context, o *Options, cfg config.Config) error {
	rep := collect(ctx, o.F, cfg)
	if o.JSON {
		enc := json.NewEncoder(o.F.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(o.F.Out, rep)
	}
	if rep.Enabled && len(rep.Problems) > 0 {
		return cmdutil.Problem()
	}
	return nil
}

func collect(ctx context.Context, f *cmdutil.Factory, cfg config.Config) Report {
	p := cfg.Portal
	rep := Report{Enabled: p.Enable, User: p.User() + "@" + p.Host(), Grants: []string{}}
	if !p.Enable {
		return rep
	}
	problem := func(what string, err error) { rep.Problems = append(rep.Problems, what+": "+err.Error()) }
	if p.Tunnel.Host != "" {
		st, err := tunnel.Status(ctx, f.Host.Portal.Tunnel)
		if err != nil {
			problem("tunnel", err)
		} else {
			rep.Tunnel = &st
			if !st.Up {
				problem("tunnel", errors.New("down (why: the tunnel's detail above)"))
			}
		}
	}
	dbc := cfg.Database
	dbc.Name = ""
	db, err := mariadb.Open(ctx, dbc)
	if err != nil {
		problem("database user", err)
	} else {
		defer db.Close()
		g, err := portaldb.Grants(ctx, db, p.User(), p.Host())
		switch {
		case err != nil:
			problem("database user", err)
		case g == nil:
			problem("database user", fmt.Errorf("%s does not exist (run `emrkit apply`)", rep.User))
		default:
			rep.Grants = g
		}
	}
	if p.Replica.Enable {
		h, err := replica.ReadHealth(ctx, f.Host.Portal.Replica)
		if err == nil {
			rep.Replica = &ReplicaState{Running: h.Running(), LagSeconds: h.SecondsBehind}
		}
		switch {
		case err != nil:
			problem("replica", err)
		case h.Error != "":
			problem("replica", fmt.Errorf("portal replica: replication error: %s", h.Error))
		case !h.Running():
			problem("replica", errors.New("replication is not running on the local filtered replica"))
		}
	}
	return rep
}

func printReport(w io.Writer, rep Report) {
	if !rep.Enabled {
		fmt.Fprintln(w, "portal: not enabled (portal.enable is false)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if t := rep.Tunnel; t != nil {
		state := "down"
		if t.Up {
			state = "up"
		}
		if t.Since != "" {
			state += " since " + t.Since
		}
		fmt.Fprintf(tw, "tunnel\t%s\t%s\n", state, t.Detail)
	} else {
		fmt.Fprintf(tw, "tunnel\tnone\tportal.tunnel.host is not set\n")
	}
	fmt.Fprintf(tw, "database user\t%s\t%s\n", rep.User, strings.Join(rep.Grants, "; "))
	if r := rep.Replica; r != nil {
		state := "stopped"
		if r.Running {
			state = "running"
		}
		lag := "lag unknown"
		if r.LagSeconds >= 0 {
			lag = fmt.Sprintf("lag %d s", r.LagSeconds)
		}
		fmt.Fprintf(tw, "replica\t%s\t%s\n", state, lag)
	}
	tw.Flush()
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "PROBLEM: "+p)
	}
}
