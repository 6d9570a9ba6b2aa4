// Package firewall is `emrkit firewall apply | status | revert`: the firewall steps alone,
// journaled in the same journal and with the same entries as `emrkit apply`, so either
// command can undo what the other did.
package firewall

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	fw "github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// Options are a firewall subcommand's inputs.
type Options struct {
	F      *cmdutil.Factory
	DryRun bool
	// Env is the host as the firewall package sees it; tests point it at a private ufw.
	Env fw.Env
}

// New returns the `firewall` command for the real host.
func New(f *cmdutil.Factory) *cobra.Command { return NewWith(f, fw.DefaultEnv()) }

// NewWith returns the `firewall` command working on env.
func NewWith(f *cmdutil.Factory, env fw.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firewall",
		Short: "Apply, show or revert emrkit's ufw firewall rules",
		Long: "The firewall denies incoming connections by default, allows outgoing ones, opens the EMR's\n" +
			"HTTPS port and SSH (SSH before anything is enabled) and keeps MariaDB and drugref local.\n" +
			"Every rule emrkit adds carries the comment 'emrkit'; revert removes exactly those.",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newApply(&Options{F: f, Env: env}), newStatus(&Options{F: f, Env: env}), newRevert(&Options{F: f, Env: env}))
	return cmd
}

// isFirewall selects the firewall's journal entries.
func isFirewall(e journal.Entry) bool { return strings.HasPrefix(e.Kind, fw.KindPrefix) }

// firewallOnly is the journal as a runner working on the firewall steps alone must see it:
// entries of other kinds are invisible, so they are neither reverted as "no longer planned"
// nor touched in any other way.
type firewallOnly struct{ step.Store }

func (s firewallOnly) Entries() []journal.Entry {
	var out []journal.Entry
	for _, e := range s.Store.Entries() {
		if isFirewall(e) {
			out = append(out, e)
		}
	}
	return out
}
