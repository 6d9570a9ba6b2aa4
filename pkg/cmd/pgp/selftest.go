package pgp

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/pgp"
)

func newSelftest(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "selftest",
		Short: "Replay OSCAR's export encryption exactly and check the result (exit 3 when it fails)",
		Long: "Selftest runs [PGP_BIN, PGP_CMD, file, PGP_KEY] from oscar.properties with PGP_ENV as the whole\n" +
			"environment, in a fresh export directory, as the Tomcat user — OSCAR's readiness check on\n" +
			"null.tmp, then an export-sized file — and checks that file.pgp appears and decrypts (with the\n" +
			"key or passphrase emrkit keeps), or, when the private key is not on this server, that it is\n" +
			"encrypted to the export key and to no other.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.F.Config()
			if err != nil {
				return err
			}
			return RunSelftest(cmd.Context(), o, cfg)
		},
	}
}

// RunSelftest runs the self-test; any reason OSCAR's exports would fail is exit 3.
func RunSelftest(ctx context.Context, o *Options, cfg config.Config) error {
	res, err := pgp.Selftest(ctx, cfg, o.env(cfg), o.TempDir)
	if err != nil {
		return &cmdutil.ExitErr{Code: cmdutil.ExitProblem, Err: fmt.Errorf("pgp selftest: %w", err)}
	}
	c := res.Call
	fmt.Fprintf(o.F.Out, "ok: OSCAR's call `%s %s FILE %s` (env %s, as %s) encrypts; %s (%.2fs)\n",
		c.Bin, c.Cmd, c.Key, c.Env, res.Account, res.Verified, res.Elapsed.Seconds())
	if c.EncryptedOnly != "true" {
		fmt.Fprintf(o.F.Err, "NOTE: %s is %q, so OSCAR still offers unencrypted exports\n", pgp.PropEncryptedOnly, c.EncryptedOnly)
	}
	return nil
}
