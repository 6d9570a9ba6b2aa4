// Package maint maps what dpkg asks of a maintainer script (script, action, versions; see
// deb-postinst(5), deb-prerm(5), deb-postrm(5)) to one emrkit operation. It decides only;
// the maint command carries the decision out.
package maint

import (
	"fmt"

	"github.com/emrkit/emrkit/pkg/debversion"
)

// Kind is an operation.
type Kind int

const (
	// Nothing: the script has nothing to do for this action.
	Nothing Kind = iota
	// Converge: write the config if missing, keep the binary copy, apply the plan.
	Converge
	// Downgrade: undo the entries introduced by releases newer than Op.Version.
	Downgrade
	// Purge: undo everything, then remove config, state and the binary copy.
	Purge
)

// Op is the decision.
type Op struct {
	Kind    Kind
	Version string // Downgrade's target version
}

// Decide maps a maintainer-script call to an operation. current is this package's version.
// Removal keeps everything (the clinic stays protected); only purge undoes.
func Decide(script, action string, args []string, current string) (Op, error) {
	switch script + " " + action {
	case "postinst configure", "postinst abort-upgrade", "postinst abort-remove",
		"postinst abort-deconfigure", "postinst reconfigure":
		// abort-*: the old package is back in place after a failed upgrade or removal; its
		// plan converges without asking anything.
		return Op{Kind: Converge}, nil
	case "postinst triggered":
		return Op{}, nil
	case "prerm upgrade":
		if len(args) < 1 {
			return Op{}, fmt.Errorf("prerm upgrade: missing the new version")
		}
		c, err := debversion.Compare(args[0], current)
		if err != nil {
			return Op{}, fmt.Errorf("prerm upgrade: %w", err)
		}
		if c < 0 {
			return Op{Kind: Downgrade, Version: args[0]}, nil
		}
		return Op{}, nil
	case "prerm remove", "prerm deconfigure", "prerm failed-upgrade":
		return Op{}, nil
	case "postrm purge":
		return Op{Kind: Purge}, nil
	case "postrm remove", "postrm upgrade", "postrm failed-upgrade", "postrm abort-install",
		"postrm abort-upgrade", "postrm disappear":
		return Op{}, nil
	}
	return Op{}, fmt.Errorf("%s called with unknown argument %q", script, action)
}
