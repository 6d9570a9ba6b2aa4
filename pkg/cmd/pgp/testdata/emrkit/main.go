// Command emrkit is a test build of emrkit's command tree holding the PGP commands as
// pkg/cmd/root wires them. The crash test builds it with -tags faultinject; EMRKIT_TEST_*
// point package pgp at the test's private paths.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	cmdpgp "github.com/emrkit/emrkit/pkg/cmd/pgp"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/pgp"
)

func main() {
	f := &cmdutil.Factory{Version: "0.3.0-1", In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
	env := pgp.Env{
		Emrkit:    os.Getenv("EMRKIT_TEST_BIN"),
		Algorithm: pgp.Algorithm(os.Getenv("EMRKIT_TEST_ALGO")),
	}
	root := &cobra.Command{Use: "emrkit", SilenceUsage: true, SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) { f.ConfigSet = cmd.Flags().Changed("config") }}
	root.PersistentFlags().StringVar(&f.ConfigPath, "config", config.DefaultPath, "configuration `FILE`")
	root.AddCommand(cmdpgp.NewWith(f, env), cmdpgp.NewOSCAREncrypt(f))
	err := root.Execute()
	if err != nil && err.Error() != "" {
		fmt.Fprintf(os.Stderr, "emrkit: %s\n", err)
	}
	os.Exit(cmdutil.ExitCode(err))
}
