package pgp

import (
	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/pgp"
)

// NewOSCAREncrypt returns the hidden top-level `oscar-encrypt FILE PASSFILE`: OSCAR's PGP
// program in symmetric mode (PGP_BIN=/usr/bin/emrkit, PGP_CMD=oscar-encrypt,
// PGP_KEY=PASSFILE). OSCAR runs it as Tomcat with EMRKIT_PGP=symmetric as the whole
// environment, so it reads no configuration and needs no PATH or HOME. Flags are not parsed:
// the two arguments are taken as given, whatever they start with.
func NewOSCAREncrypt(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:                pgp.OSCAREncryptCommand + " FILE PASSFILE",
		Short:              "Encrypt FILE to FILE.pgp with the passphrase in PASSFILE (run by OSCAR)",
		Hidden:             true,
		DisableFlagParsing: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return cmdutil.Usage(errUsage)
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			return pgp.OSCAREncrypt(args[0], args[1])
		},
	}
}

type usageError string

func (e usageError) Error() string { return string(e) }

const errUsage = usageError("usage: emrkit oscar-encrypt FILE PASSFILE (OSCAR runs this; see `emrkit pgp setup`)")
