package pgp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Ownertrust values of gpg's trust database.
const (
	trustUndefined = 2 // "I don't know": what gpg assumes when a key has no record
	trustUltimate  = 6
)

// GPG runs the real gpg on one GnuPG home, as the account that owns it, with a fixed argv
// and a minimal environment. Keys and trust values reach gpg on stdin, never in argv.
type GPG struct {
	Path    string   // gpg, e.g. /usr/bin/gpg
	Conf    string   // gpgconf, to stop the agent gpg may start
	Home    string   // --homedir
	Account *Account // nil runs as the current user
}

// Available says whether gpg can be run, with the fix when it cannot.
func (g GPG) Available() error {
	fi, err := os.Stat(g.Path)
	if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("gpg is not installed (%s missing); install it: apt-get install gnupg", g.Path)
	}
	return nil
}

func (g GPG) env() []string {
	home := os.Getenv("HOME")
	if g.Account != nil {
		home = g.Account.Home
	}
	return []string{"HOME=" + home, "GNUPGHOME=" + g.Home, "PATH=/usr/bin:/bin", "LC_ALL=C"}
}

func (g GPG) who() string {
	if g.Account == nil {
		return ""
	}
	return " (as " + g.Account.Name + ")"
}

// run executes gpg with args after the fixed options. autostart lets gpg start gpg-agent
// (it needs it to see secret keys); every other call stays agent-free.
func (g GPG) run(ctx context.Context, stdin io.Reader, autostart bool, args ...string) ([]byte, error) {
	argv := []string{"--homedir", g.Home, "--batch", "--no-tty", "--no-greeting", "--with-colons"}
	if !autostart {
		argv = append(argv, "--no-autostart")
	}
	return g.exec(ctx, g.Path, stdin, append(argv, args...))
}

func (g GPG) exec(ctx context.Context, path string, stdin io.Reader, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, argv...)
	cmd.Env = g.env()
	cmd.Dir = "/"
	cmd.Stdin = stdin
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if g.Account != nil {
		cmd.SysProcAttr = g.Account.credential()
	}
	if err := cmd.Run(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is not installed; install it: apt-get install gnupg", path)
		}
		return out.Bytes(), fmt.Errorf("%s %s%s: %w: %s", path, firstOp(argv), g.who(), err, lastLines(stderr.String(), 3))
	}
	return out.Bytes(), nil
}

// firstOp names the gpg command in an error (the first --long option after the fixed ones).
func firstOp(argv []string) string {
	for _, a := range argv {
		switch a {
		case "--homedir", "--batch", "--no-tty", "--no-greeting", "--with-colons", "--no-autostart":
			continue
		}
		if strings.HasPrefix(a, "--") {
			return a
		}
	}
	return strings.Join(argv, " ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// Fingerprints lists the primary keys' fingerprints in the keyring.
func (g GPG) Fingerprints(ctx context.Context) (map[string]bool, error) {
	out, err := g.run(ctx, nil, false, "--fixed-list-mode", "--list-keys")
	if err != nil {
		return nil, err
	}
	fprs := map[string]bool{}
	primary := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		switch {
		case f[0] == "pub":
			primary = true
		case f[0] == "sub":
			primary = false
		case f[0] == "fpr" && primary && len(f) > 9:
			fprs[strings.ToUpper(f[9])] = true
			primary = false
		}
	}
	return fprs, sc.Err()
}

// Ownertrust returns the ownertrust gpg holds for fpr (0 when it has no record).
func (g GPG) Ownertrust(ctx context.Context, fpr string) (int, error) {
	out, err := g.run(ctx, nil, false, "--export-ownertrust")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 2 && strings.EqualFold(f[0], fpr) {
			return strconv.Atoi(f[1])
		}
	}
	return 0, sc.Err()
}

// Import adds a public key.
func (g GPG) Import(ctx context.Context, key []byte) error {
	_, err := g.run(ctx, bytes.NewReader(key), false, "--import")
	return err
}

// SetOwnertrust sets fpr's ownertrust; gpg ignores 0, so "no record" is restored as
// undefined, which gpg treats alike.
func (g GPG) SetOwnertrust(ctx context.Context, fpr string, trust int) error {
	if trust == 0 {
		trust = trustUndefined
	}
	_, err := g.run(ctx, strings.NewReader(fmt.Sprintf("%s:%d:\n", fpr, trust)), false, "--import-ownertrust")
	return err
}

// CheckTrustDB brings the trust database up to date now, while emrkit may write it: gpg
// then finds nothing to write when it encrypts, so OSCAR's call works even where Tomcat's
// systemd unit makes the GnuPG home read-only (it fails with "trustdb ... write failed"
// otherwise).
func (g GPG) CheckTrustDB(ctx context.Context) error {
	_, err := g.run(ctx, nil, false, "--check-trustdb")
	return err
}

// Delete removes the public key fpr. gpg refuses while the keyring also holds its secret
// key; it asks the agent about that, so the agent is stopped afterwards.
func (g GPG) Delete(ctx context.Context, fpr string) error {
	_, err := g.run(ctx, nil, true, "--yes", "--delete-keys", fpr)
	g.StopAgent(ctx)
	return err
}

// Export returns fpr's public key as gpg holds it (binary).
func (g GPG) Export(ctx context.Context, fpr string) ([]byte, error) {
	return g.run(ctx, nil, false, "--export", fpr)
}

// StopAgent stops any gpg-agent (and dirmngr) gpg started for this home, so none lingers
// and the home can be removed. It is best effort: there is usually none.
func (g GPG) StopAgent(ctx context.Context) {
	if g.Conf == "" {
		return
	}
	if _, err := os.Stat(g.Home); err != nil {
		return
	}
	g.exec(ctx, g.Conf, nil, []string{"--homedir", g.Home, "--kill", "all"})
}
