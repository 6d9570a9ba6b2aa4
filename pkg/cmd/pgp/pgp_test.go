package pgp_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"

	cmdpgp "github.com/emrkit/emrkit/pkg/cmd/pgp"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
	"github.com/emrkit/emrkit/pkg/plan"
	"github.com/emrkit/emrkit/pkg/props"
)

// TestMain makes the test binary `emrkit oscar-encrypt` when OSCAR's call runs it.
func TestMain(m *testing.M) {
	if len(os.Args) >= 2 && os.Args[1] == pgp.OSCAREncryptCommand {
		f := &cmdutil.Factory{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
		c := cmdpgp.NewOSCAREncrypt(f)
		c.SetArgs(os.Args[2:])
		c.SilenceErrors, c.SilenceUsage = true, true
		err := c.Execute()
		if err != nil {
			fmt.Fprintln(os.Stderr, "emrkit:", err)
		}
		os.Exit(cmdutil.ExitCode(err))
	}
	os.Exit(m.Run())
}

const fixture = "# oscar.properties\r\nTOTP=1\r\nPGP_ENV=GNUPGHOME=/root/.gnupg\r\n"

// cli is a host in a temp dir driven through the commands, as an admin would.
type cli struct {
	t      *testing.T
	base   string
	user   pgp.Account
	cfg    config.Config
	config string
	props  string
	env    pgp.Env
}

func newCLI(t *testing.T, mode string) *cli {
	t.Helper()
	pgptest.RequireTools(t)
	base := pgptest.Dir(t)
	home := filepath.Join(base, "tomcat")
	os.Mkdir(home, 0o755)
	c := &cli{t: t, base: base, config: filepath.Join(base, "emrkit.yaml"), props: filepath.Join(base, "oscar.properties")}
	c.user = pgptest.User(t, home)
	os.WriteFile(c.props, []byte(fixture), 0o640)
	os.Chown(c.props, 0, c.user.GID)
	c.cfg = config.Default()
	c.cfg.PGP.Mode = mode
	c.cfg.OSCAR.Properties, c.cfg.OSCAR.TomcatUser = c.props, c.user.Name
	c.cfg.Paths = config.Paths{StateDir: filepath.Join(base, "state"), BackupDir: filepath.Join(base, "backup"), CronFile: filepath.Join(base, "cron"),
		PGPPassphraseFile: filepath.Join(base, "etc", "pgp-export.pass")}
	c.writeConfig()
	c.env = pgp.Env{Emrkit: pgptest.CopyExecutable(t, filepath.Join(base, "emrkit")), Algorithm: pgp.Curve25519}
	pgptest.StopAgents(t, &c.user, filepath.Join(home, ".gnupg"))
	return c
}

func (c *cli) writeConfig() {
	c.t.Helper()
	if err := config.Write(c.config, c.cfg); err != nil {
		c.t.Fatal(err)
	}
}

// run executes `emrkit ARGS...` through a command tree shaped like root's, without a terminal.
func (c *cli) run(args ...string) (stdout, stderr string, code int) {
	return c.runOn(nil, args...)
}

// runOn runs the command with tty as its terminal (nil: none).
func (c *cli) runOn(tty *os.File, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{Version: "0.3.0-1", In: strings.NewReader(""), Out: &out, Err: &errb, Host: plan.Host{ConfigPath: c.config}}
	if tty != nil {
		f.In, f.Interactive = tty, func() bool { return true }
	}
	root := &cobra.Command{Use: "emrkit", SilenceUsage: true, SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) { f.ConfigSet = cmd.Flags().Changed("config") }}
	root.PersistentFlags().StringVar(&f.ConfigPath, "config", config.DefaultPath, "")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cmdutil.Usage(err) })
	root.AddCommand(cmdpgp.NewWith(f, c.env), cmdpgp.NewOSCAREncrypt(f))
	root.SetArgs(append([]string{"--config", c.config}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	if err != nil && err.Error() != "" {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), cmdutil.ExitCode(err)
}

func (c *cli) ok(args ...string) (string, string) {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("emrkit %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

func (c *cli) fails(code int, want string, args ...string) string {
	c.t.Helper()
	out, errs, got := c.run(args...)
	if got != code || !strings.Contains(out+errs, want) {
		c.t.Errorf("emrkit %s: exit %d, want %d with %q\n%s%s", strings.Join(args, " "), got, code, want, out, errs)
	}
	return errs
}

func (c *cli) prop(key string) string {
	f, err := props.Load(c.props)
	if err != nil {
		c.t.Fatal(err)
	}
	v, _ := f.Doc.Get(key)
	return v
}

// oscarEncrypt runs the call from the properties as OSCAR does, on a fresh export.
func (c *cli) oscarEncrypt(sub string, size int) (plain []byte, sealed string) {
	c.t.Helper()
	parent := filepath.Join(c.base, sub)
	os.Mkdir(parent, 0o755)
	dir, name, plain := pgptest.ExportDir(c.t, parent, c.user, size)
	out, err := pgptest.OSCARCall(c.user, dir, c.prop(pgp.PropEnv), c.prop(pgp.PropBin), c.prop(pgp.PropCmd), name, c.prop(pgp.PropKey))
	if err != nil {
		c.t.Fatalf("OSCAR's call: %v: %s", err, out)
	}
	// The admin receives only the encrypted export.
	os.Remove(filepath.Join(dir, name))
	return plain, filepath.Join(dir, name+".pgp")
}

func mustFiles(c *cli) pgp.Files { return pgp.Paths(c.cfg) }

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes (%v), want the %d encrypted", path, len(got), err, len(want))
	}
}

func absent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s exists", path)
	}
}

func (c *cli) restored() {
	c.t.Helper()
	if got, _ := os.ReadFile(c.props); string(got) != fixture {
		c.t.Errorf("oscar.properties not restored byte for byte:\n%q", got)
	}
	absent(c.t, filepath.Join(c.cfg.Paths.StateDir, "pgp"))
	absent(c.t, filepath.Join(c.user.Home, ".gnupg"))
	absent(c.t, c.cfg.Paths.PGPPassphraseFile)
}

// TestSymmetricCommands: setup (dry run, run, re-run), selftest, OSCAR's call through
// `emrkit oscar-encrypt`, decrypt (default passphrase file, wrong passphrase, existing
// output), a failing selftest (exit 3), then pgp.mode none undoes it all.
func TestSymmetricCommands(t *testing.T) {
	c := newCLI(t, "symmetric")
	out, _ := c.ok("pgp", "setup", "--dry-run")
	if !strings.Contains(out, "would apply") || c.prop(pgp.PropBin) != "" {
		t.Errorf("dry run changed something or said nothing:\n%s", out)
	}
	absent(t, c.cfg.Paths.StateDir) // not even the journal's lock
	watch := pgptest.WatchProcs(c.user.UID)
	c.ok("pgp", "setup")
	if out, _ := c.ok("pgp", "setup"); !strings.Contains(out, "nothing to change") {
		t.Errorf("second setup:\n%s", out)
	}
	out, _ = c.ok("pgp", "selftest")
	if !strings.Contains(out, "ok: OSCAR's call") || !strings.Contains(out, "decrypted with the passphrase") {
		t.Errorf("selftest:\n%s", out)
	}
	plain, sealed := c.oscarEncrypt("a", 512<<10)
	c.ok("pgp", "decrypt", sealed)
	sameFile(t, strings.TrimSuffix(sealed, ".pgp"), plain)
	outFile := filepath.Join(c.base, "out.zip")
	c.ok("pgp", "decrypt", sealed, "-o", outFile)
	sameFile(t, outFile, plain)
	c.fails(1, "already exists", "pgp", "decrypt", sealed, "-o", outFile)

	wrong := filepath.Join(c.base, "wrong.pass")
	os.WriteFile(wrong, []byte("not-it\n"), 0o600)
	c.fails(1, "passphrase", "pgp", "decrypt", sealed, "-o", filepath.Join(c.base, "w.zip"), "--passphrase-file", wrong)
	absent(t, filepath.Join(c.base, "w.zip"))

	pass, _ := pgp.ReadPassphraseFile(c.cfg.Paths.PGPPassphraseFile)
	watch.Check(t, [][]byte{pass}, "oscar-encrypt")

	// Tomcat can no longer read the passphrase: OSCAR's exports would fail, and the
	// self-test says so with exit 3.
	os.Chmod(c.cfg.Paths.PGPPassphraseFile, 0o600)
	c.fails(3, "self-test failed", "pgp", "selftest")
	os.Chmod(c.cfg.Paths.PGPPassphraseFile, 0o640)

	c.fails(2, "usage: emrkit oscar-encrypt", "oscar-encrypt", "only-one-arg")

	c.cfg.PGP.Mode = "none"
	c.writeConfig()
	if out, _ := c.ok("pgp", "setup"); !strings.Contains(out, "undone") {
		t.Errorf("mode none did not undo:\n%s", out)
	}
	c.restored()
}

// TestGenerateCommands: setup tells the admin to move the private key away; decrypt uses it
// by default; once it is moved off, the self-test still proves the exports and decrypt asks
// for --key; a wrong passphrase fails cleanly.
func TestGenerateCommands(t *testing.T) {
	c := newCLI(t, "generate")
	watch := pgptest.WatchProcs(c.user.UID)
	_, errs := c.ok("pgp", "setup")
	if !strings.Contains(errs, "IMPORTANT") || !strings.Contains(errs, "delete them from this server") {
		t.Errorf("setup did not tell the admin to move the key:\n%s", errs)
	}
	files := pgp.Paths(c.cfg)
	pass, _ := os.ReadFile(files.Passphrase)
	if out, _ := c.ok("pgp", "selftest"); !strings.Contains(out, "decrypted with the private key") {
		t.Errorf("selftest:\n%s", out)
	}
	plain, sealed := c.oscarEncrypt("a", 256<<10)
	c.ok("pgp", "decrypt", sealed)
	sameFile(t, strings.TrimSuffix(sealed, ".pgp"), plain)

	// The admin moves the key and passphrase off the server, as told.
	offKey, offPass := filepath.Join(c.base, "offsite.sec.asc"), filepath.Join(c.base, "offsite.pass")
	os.Rename(files.PrivateKey, offKey)
	os.Rename(files.Passphrase, offPass)
	if out, _ := c.ok("pgp", "setup"); !strings.Contains(out, "nothing to change") {
		t.Errorf("moving the key off counted as drift:\n%s", out)
	}
	if out, _ := c.ok("pgp", "selftest"); !strings.Contains(out, "only (its private key is not on this server)") {
		t.Errorf("selftest without the private key:\n%s", out)
	}
	_, sealed2 := c.oscarEncrypt("b", 1000)
	c.fails(1, "give --key FILE", "pgp", "decrypt", sealed2)
	wrong := filepath.Join(c.base, "wrong.pass")
	os.WriteFile(wrong, []byte("not-it\n"), 0o600)
	c.fails(1, "wrong passphrase", "pgp", "decrypt", sealed2, "--key", offKey, "--passphrase-file", wrong)
	absent(t, strings.TrimSuffix(sealed2, ".pgp"))
	c.fails(1, "no terminal", "pgp", "decrypt", sealed2, "--key", offKey)
	c.ok("pgp", "decrypt", sealed2, "--key", offKey, "--passphrase-file", offPass)

	watch.Check(t, [][]byte{pass}, "pgpgpg -e")

	c.cfg.PGP.Mode = "none"
	c.writeConfig()
	c.ok("pgp", "setup")
	c.restored()
}

// TestSetupSeesOnlyPGPEntries: pgp setup neither reverts nor touches other entries, and
// IsPGP picks exactly the PGP kinds and properties.
func TestSetupSeesOnlyPGPEntries(t *testing.T) {
	for _, tc := range []struct {
		e    journal.Entry
		want bool
	}{
		{journal.Entry{Kind: pgp.HomeKind}, true},
		{journal.Entry{Kind: pgp.SecretsKind}, true},
		{journal.Entry{Kind: props.Kind, Target: "/x/oscar.properties#PGP_KEY"}, true},
		{journal.Entry{Kind: props.Kind, Target: "oscar.properties#demographic.export.encryptedOnly"}, true},
		{journal.Entry{Kind: props.Kind, Target: "/x/oscar.properties#TOTP"}, false},
		{journal.Entry{Kind: "firewall.rule"}, false},
	} {
		if got := cmdpgp.IsPGP(tc.e); got != tc.want {
			t.Errorf("IsPGP(%s %s) = %v", tc.e.Kind, tc.e.Target, got)
		}
	}
	c := newCLI(t, "none")
	j, err := journal.Open(c.cfg.Paths.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	other := journal.Entry{ID: "props.key:" + c.props + "#TOTP", Kind: props.Kind, Target: c.props + "#TOTP", Since: "0.1.0", State: journal.Done,
		Desired: []byte(`{"path":"x","key":"TOTP","value":"1","line":"TOTP=1"}`), Before: []byte(`{"present":false}`)}
	j.Put(other)
	j.Close()
	c.ok("pgp", "setup")
	es, _ := journal.Read(c.cfg.Paths.StateDir)
	if len(es) != 1 || es[0].State != journal.Done {
		t.Errorf("pgp setup touched another entry: %+v", es)
	}
}

func TestCommandShape(t *testing.T) {
	cmd := cmdpgp.New(&cmdutil.Factory{})
	for _, name := range []string{"setup", "selftest", "decrypt"} {
		if sub, _, err := cmd.Find([]string{name}); err != nil || sub.Name() != name {
			t.Errorf("pgp %s: %v", name, err)
		}
	}
	if enc := cmdpgp.NewOSCAREncrypt(&cmdutil.Factory{}); !enc.Hidden || enc.Name() != "oscar-encrypt" {
		t.Error("oscar-encrypt must be a hidden command named oscar-encrypt")
	}
}

// TestBadInputCommands: bad input is exit 1 with one clear line, and oscar.properties as it
// was; a self-test before any setup is exit 3.
func TestBadInputCommands(t *testing.T) {
	c := newCLI(t, "none")
	c.cfg.PGP.Mode, c.cfg.PGP.PublicKey = "public-key", filepath.Join(c.base, "garbage.asc")
	os.WriteFile(c.cfg.PGP.PublicKey, []byte("this is not a key\n"), 0o644)
	c.writeConfig()
	c.fails(1, "not an OpenPGP public key", "pgp", "setup")
	c.fails(3, "PGP_BIN is not set", "pgp", "selftest")

	c.cfg.PGP.Mode, c.cfg.OSCAR.TomcatUser = "generate", "emrkit-no-such-user"
	c.writeConfig()
	c.fails(1, "oscar.tomcat_user", "pgp", "setup")

	c.cfg.OSCAR.TomcatUser = c.user.Name
	c.writeConfig()
	c.env.GPG = filepath.Join(c.base, "no-gpg")
	errs := c.fails(1, "gpg is not installed", "pgp", "setup")
	if strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("not one line:\n%s", errs)
	}
	c.restored()
}

// TestPassphraseFileFollowsConfig: symmetric mode writes its passphrase where
// paths.pgp_passphrase_file says (0640 root:<Tomcat's group>), and nothing at the default
// path; the key is written to the configuration only when set, and must be absolute and
// outside the state dir (root only, where Tomcat cannot read it).
func TestPassphraseFileFollowsConfig(t *testing.T) {
	c := newCLI(t, "symmetric")
	c.cfg.Paths.PGPPassphraseFile = filepath.Join(c.base, "clinic", "export.pass")
	c.writeConfig()
	_, defaultErr := os.Lstat(config.DefaultPGPPassphraseFile)
	c.ok("pgp", "setup")
	fi, err := os.Stat(c.cfg.Paths.PGPPassphraseFile)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || st.Uid != 0 || int(st.Gid) != c.user.GID {
		t.Errorf("%s: %v %d:%d, want 0640 0:%d", c.cfg.Paths.PGPPassphraseFile, fi.Mode(), st.Uid, st.Gid, c.user.GID)
	}
	if got := c.prop(pgp.PropKey); got != c.cfg.Paths.PGPPassphraseFile {
		t.Errorf("PGP_KEY=%q, want %s", got, c.cfg.Paths.PGPPassphraseFile)
	}
	if _, err := os.Lstat(config.DefaultPGPPassphraseFile); defaultErr != nil && err == nil {
		t.Errorf("%s was created", config.DefaultPGPPassphraseFile)
	}
	if out, _ := c.ok("pgp", "selftest"); !strings.Contains(out, "decrypted with the passphrase") {
		t.Errorf("selftest:\n%s", out)
	}

	written, _ := os.ReadFile(c.config)
	unset := c.cfg
	unset.Paths.PGPPassphraseFile = ""
	other := filepath.Join(c.base, "unset.yaml")
	if err := config.Write(other, unset); err != nil {
		t.Fatal(err)
	}
	plain, _ := os.ReadFile(other)
	if !strings.Contains(string(written), "pgp_passphrase_file: ") || strings.Contains(string(plain), "pgp_passphrase_file") {
		t.Errorf("pgp_passphrase_file written when set only? set:\n%s\nunset:\n%s", written, plain)
	}

	for value, want := range map[string]string{
		"export.pass": `paths.pgp_passphrase_file: "export.pass" must be an absolute path`,
		filepath.Join(c.cfg.Paths.StateDir, "pgp", "export.pass"): "is inside paths.state_dir " + c.cfg.Paths.StateDir,
	} {
		data := strings.Replace(string(written), "pgp_passphrase_file: "+c.cfg.Paths.PGPPassphraseFile, "pgp_passphrase_file: "+value, 1)
		os.WriteFile(c.config, []byte(data), 0o600)
		c.fails(1, want, "pgp", "setup")
	}
}
