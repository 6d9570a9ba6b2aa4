package pgp_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
)

// TestMain lets the test binary stand in for /usr/bin/emrkit when OSCAR (the self-test, or
// a test replaying OSCAR's call) runs it as `oscar-encrypt FILE PASSFILE`.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == pgp.OSCAREncryptCommand {
		if err := pgp.OSCAREncrypt(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "emrkit:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fixture is an oscar.properties as a clinic has it: comments, an earlier PGP_BIN emrkit
// replaces, a commented-out key, "KEY: value" style, no final newline.
const fixture = "# oscar.properties\nTOTP=1\nPGP_BIN=/usr/local/bin/pgp\n#PGP_KEY=old\nbuttons: true\nTMP_DIR=/var/lib/OscarDocument/oscar/export/"

// lab is a host in a temp dir: a stand-in Tomcat user, its (missing) home's GnuPG home,
// oscar.properties, the state dir.
type lab struct {
	t     testing.TB
	base  string
	user  pgp.Account
	home  string // the GnuPG home
	cfg   config.Config
	env   pgp.Env
	props string
	orig  []byte
}

func defaultCfg(mode string) config.Config {
	c := config.Default()
	c.PGP.Mode = mode
	return c
}

func newLab(t testing.TB, mode string) *lab {
	t.Helper()
	pgptest.RequireTools(t)
	base := pgptest.Dir(t)
	userHome := filepath.Join(base, "tomcat")
	if err := os.Mkdir(userHome, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, base: base, home: filepath.Join(userHome, ".gnupg"), props: filepath.Join(base, "oscar.properties"), orig: []byte(fixture)}
	l.user = pgptest.User(t, userHome)
	if err := os.WriteFile(l.props, l.orig, 0o644); err != nil {
		t.Fatal(err)
	}
	l.cfg = config.Default()
	l.cfg.PGP.Mode = mode
	l.cfg.OSCAR.Properties = l.props
	l.cfg.Paths.StateDir = filepath.Join(base, "state")
	l.cfg.Paths.PGPPassphraseFile = filepath.Join(base, "etc", "pgp-export.pass")
	l.env = pgp.Env{
		Properties: l.props, TomcatUser: l.user.Name,
		Emrkit: pgptest.CopyExecutable(t, filepath.Join(base, "emrkit")),
	}
	pgptest.StopAgents(t, &l.user, l.home)
	return l
}

// run applies the PGP steps the way `emrkit pgp setup` does (only them), returning the
// runner's output.
func (l *lab) run() (step.Report, string, error) {
	l.t.Helper()
	steps, err := pgp.Steps(l.cfg, l.env, pgp.Since)
	if err != nil {
		return step.Report{}, "", err
	}
	return l.runner(func(r *step.Runner) (step.Report, error) { return r.Run(context.Background(), steps) })
}

func (l *lab) revert() (step.Report, string, error) {
	l.t.Helper()
	return l.runner(func(r *step.Runner) (step.Report, error) {
		return r.Revert(context.Background(), func(journal.Entry) bool { return true })
	})
}

func (l *lab) runner(f func(*step.Runner) (step.Report, error)) (step.Report, string, error) {
	j, err := journal.Open(l.cfg.Paths.StateDir)
	if err != nil {
		l.t.Fatal(err)
	}
	defer j.Close()
	var out bytes.Buffer
	u := pgp.Undoers(l.env)
	u[props.Kind] = props.Undoer{}
	rep, err := f(&step.Runner{Journal: j, Undoers: u, Out: &out})
	return rep, out.String(), err
}

func (l *lab) mustRun() step.Report {
	l.t.Helper()
	rep, out, err := l.run()
	if err != nil {
		l.t.Fatalf("setup: %v\n%s", err, out)
	}
	l.t.Logf("setup:\n%s", out)
	return rep
}

func (l *lab) entries() []journal.Entry {
	l.t.Helper()
	e, err := journal.Read(l.cfg.Paths.StateDir)
	if err != nil {
		l.t.Fatal(err)
	}
	return e
}

func (l *lab) prop(key string) string {
	l.t.Helper()
	f, err := props.Load(l.props)
	if err != nil {
		l.t.Fatal(err)
	}
	v, _ := f.Doc.Get(key)
	return v
}

// unchanged fails unless the host is as the lab made it: properties byte for byte, no
// GnuPG home, no journal entry, nothing in the state dir's pgp directory.
func (l *lab) unchanged() {
	l.t.Helper()
	if got, _ := os.ReadFile(l.props); !bytes.Equal(got, l.orig) {
		l.t.Errorf("oscar.properties changed:\n%s", got)
	}
	if _, err := os.Stat(l.home); err == nil {
		l.t.Errorf("GnuPG home %s exists", l.home)
	}
	if _, err := os.Stat(filepath.Join(l.cfg.Paths.StateDir, "pgp")); err == nil {
		l.t.Errorf("%s/pgp exists", l.cfg.Paths.StateDir)
	}
	for _, e := range l.entries() {
		if e.State == journal.Done || e.State == journal.Pending {
			l.t.Errorf("journal holds %s entry %s", e.State, e.ID)
		}
	}
}

// reverted fails unless undo gave back the properties byte for byte and removed what
// emrkit created.
func (l *lab) reverted() {
	l.t.Helper()
	rep, out, err := l.revert()
	if err != nil {
		l.t.Fatalf("revert: %v\n%s", err, out)
	}
	l.t.Logf("revert:\n%s", out)
	if rep.Kept+rep.Skipped+rep.Unknown > 0 {
		l.t.Errorf("revert kept or skipped something: %+v", rep)
	}
	if got, _ := os.ReadFile(l.props); !bytes.Equal(got, l.orig) {
		l.t.Errorf("oscar.properties not restored byte for byte:\n%q\nwant\n%q", got, l.orig)
	}
	if _, err := os.Stat(filepath.Join(l.cfg.Paths.StateDir, "pgp")); err == nil {
		l.t.Errorf("%s/pgp still exists after undo", l.cfg.Paths.StateDir)
	}
}

// oscarEncrypt runs OSCAR's call from the properties on an export-sized file, as the
// stand-in Tomcat user, and returns the plaintext and the path of file.pgp.
func (l *lab) oscarEncrypt(size int) ([]byte, string) {
	l.t.Helper()
	dir, name, plain := pgptest.ExportDir(l.t, l.base, l.user, size)
	out, err := pgptest.OSCARCall(l.user, dir, l.prop(pgp.PropEnv), l.prop(pgp.PropBin), l.prop(pgp.PropCmd), name, l.prop(pgp.PropKey))
	if err != nil {
		l.t.Fatalf("OSCAR's call: %v: %s", err, out)
	}
	sealed := filepath.Join(dir, name+".pgp")
	if _, err := os.Stat(sealed); err != nil {
		l.t.Fatalf("OSCAR's call exited 0 but wrote no %s.pgp: %s", name, out)
	}
	return plain, sealed
}

// gpgDecrypt decrypts with the real gpg as root in home (which holds the secret key, or
// none for a symmetric export), the passphrase coming from a file.
func gpgDecrypt(t testing.TB, home, sealed, passFile string) []byte {
	t.Helper()
	args := []string{"--pinentry-mode", "loopback"}
	if passFile != "" {
		args = append(args, "--passphrase-file", passFile)
	}
	return pgptest.GPG(t, home, nil, append(args, "--decrypt", sealed)...)
}

func mustContain(t *testing.T, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Errorf("%q does not contain %q", s, want)
	}
}
