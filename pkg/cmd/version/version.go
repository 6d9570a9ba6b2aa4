// Package version is `emrkit version`.
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/release"
)

func New(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print emrkit's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(f.Out, "emrkit %s\n", release.Build{Version: f.Version, Dev: f.Dev})
			return err
		},
	}
}
