package pgp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/pgp"
)

// DecryptOptions are `pgp decrypt`'s inputs.
type DecryptOptions struct {
	*Options
	File, Out      string
	Key            string // private key file; "" = the one emrkit keeps (generate mode)
	PassphraseFile string // "" = the one emrkit keeps, else asked on the terminal
}

func newDecrypt(o *Options) *cobra.Command {
	do := &DecryptOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "decrypt FILE",
		Short: "Decrypt an OSCAR export (export_*.zip.pgp)",
		Long: "Decrypt writes FILE without its .pgp suffix (or -o OUT, - for standard output), mode 0600.\n" +
			"Without --key it uses what emrkit keeps in its state directory: the generated private key\n" +
			"and passphrase (generate mode) or the export passphrase (symmetric mode). A passphrase not\n" +
			"given with --passphrase-file is asked on the terminal; it is never read from the command line.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			do.File = args[0]
			cfg, err := o.F.Config()
			if err != nil {
				return err
			}
			return RunDecrypt(cmd.Context(), do, cfg)
		},
	}
	cmd.Flags().StringVarP(&do.Out, "output", "o", "", "write the plaintext to `OUT` (- for standard output)")
	cmd.Flags().StringVar(&do.Key, "key", "", "armored or binary private key `FILE`")
	cmd.Flags().StringVar(&do.PassphraseFile, "passphrase-file", "", "read the passphrase from the first line of `FILE`")
	return cmd
}

// RunDecrypt decrypts o.File. A wrong passphrase, wrong key or damaged file is an error that
// leaves no output behind.
func RunDecrypt(_ context.Context, o *DecryptOptions, cfg config.Config) error {
	out := o.Out
	if out == "" {
		out = strings.TrimSuffix(strings.TrimSuffix(o.File, ".pgp"), ".gpg")
		if out == o.File {
			return cmdutil.Usage(fmt.Errorf("%s does not end in .pgp; name the output with -o OUT", o.File))
		}
	}
	files := pgp.Paths(cfg)
	keys, err := o.keys(cfg, files)
	if err != nil {
		return err
	}
	pass := o.passphrase(cfg, files)
	start := time.Now()
	var msg pgp.Message
	var size int64
	if out == "-" {
		in, err := os.Open(o.File)
		if err != nil {
			return err
		}
		defer in.Close()
		cw := &counter{w: o.F.Out}
		msg, err = pgp.Decrypt(cw, in, keys, pass)
		size = cw.n
		if err != nil {
			return fmt.Errorf("decrypt %s: %w", o.File, err)
		}
	} else {
		if msg, err = pgp.DecryptFile(o.File, out, keys, pass); err != nil {
			return fmt.Errorf("decrypt %s: %w (nothing was written)", o.File, err)
		}
		if fi, err := os.Stat(out); err == nil {
			size = fi.Size()
		}
	}
	how := "with the private key"
	if msg.Symmetric {
		how = "with the passphrase"
	}
	secs := time.Since(start).Seconds()
	dest := out
	if out == "-" {
		dest = "standard output"
	}
	fmt.Fprintf(o.F.Err, "decrypted %s %s to %s: %d bytes in %.2fs (%.0f MB/s)\n", o.File, how, dest, size, secs, float64(size)/1e6/secs)
	return nil
}

// keys returns the private keys to try: --key, or the generated key emrkit keeps.
func (o *DecryptOptions) keys(cfg config.Config, files pgp.Files) (openpgp.EntityList, error) {
	path := o.Key
	if path == "" {
		switch cfg.PGP.Mode {
		case "symmetric":
			return nil, nil
		case "generate":
			path = files.PrivateKey
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no --key given, and the generated private key is no longer in %s (moved off the server?); give --key FILE", files.Dir)
			}
		default:
			return nil, nil // a symmetric export, or the passphrase decides
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	locked, err := pgp.PrivateKeyLocked(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var pass []byte
	if locked {
		if pass, err = o.keyPassphrase(path, files); err != nil {
			return nil, err
		}
	}
	keys, err := pgp.ReadPrivateKey(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// keyPassphrase unlocks a private key: --passphrase-file, emrkit's own passphrase file for
// its own key, or the terminal.
func (o *DecryptOptions) keyPassphrase(key string, files pgp.Files) ([]byte, error) {
	switch {
	case o.PassphraseFile != "":
		return pgp.ReadPassphraseFile(o.PassphraseFile)
	case key == files.PrivateKey:
		if _, err := os.Stat(files.Passphrase); err == nil {
			return pgp.ReadPassphraseFile(files.Passphrase)
		}
	}
	return o.ask("passphrase of " + key)
}

// passphrase supplies the passphrase of a symmetric export, asked only if the export is one.
func (o *DecryptOptions) passphrase(cfg config.Config, files pgp.Files) func() ([]byte, error) {
	return func() ([]byte, error) {
		if o.PassphraseFile != "" {
			return pgp.ReadPassphraseFile(o.PassphraseFile)
		}
		if cfg.PGP.Mode == "symmetric" {
			if _, err := os.Stat(files.Symmetric); err == nil {
				return pgp.ReadPassphraseFile(files.Symmetric)
			}
		}
		return o.ask("passphrase of " + o.File)
	}
}

// ask reads a passphrase from the terminal without echo.
func (o *DecryptOptions) ask(what string) ([]byte, error) {
	f, ok := o.F.In.(*os.File)
	if !ok || o.F.Interactive == nil || !o.F.Interactive() || !term.IsTerminal(int(f.Fd())) {
		return nil, fmt.Errorf("%s needed and there is no terminal to ask on; give --passphrase-file FILE", what)
	}
	fmt.Fprintf(o.F.Err, "%s: ", what)
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(o.F.Err)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return p, nil
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
