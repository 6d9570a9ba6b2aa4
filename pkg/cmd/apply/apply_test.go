package apply_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/cmd/root"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp"
	"github.com/emrkit/emrkit/pkg/pgp/pgptest"
	"github.com/emrkit/emrkit/pkg/plan"
)

// host is a fresh OSCAR host in a temp dir: the database without emrkit's columns,
// oscar.properties, a stand-in Tomcat user, and no state dir yet.
type host struct {
	t      *testing.T
	base   string
	config string
	cfg    config.Config
	srv    *mariadbtest.Server
}

func freshHost(t *testing.T, srv *mariadbtest.Server, name, mode string) *host {
	t.Helper()
	pgptest.RequireTools(t)
	db := srv.CreateDatabase(t, name)
	oscarfixture.Create(t, srv.DB(t, name), true)
	base := pgptest.Dir(t)
	tomcat := filepath.Join(base, "tomcat")
	os.Mkdir(tomcat, 0o755)
	user := pgptest.User(t, tomcat)
	pgptest.StopAgents(t, &user, filepath.Join(tomcat, ".gnupg"))
	props := filepath.Join(base, "oscar.properties")
	os.WriteFile(props, []byte("# oscar.properties\nTOTP=0\n"), 0o640)
	h := &host{t: t, base: base, config: filepath.Join(base, "emrkit.yaml"), srv: srv}
	h.cfg = config.Default()
	h.cfg.Database = db
	h.cfg.TOTP.Users = []string{}
	h.cfg.Firewall.Enable = false
	h.cfg.PGP.Mode = mode
	h.cfg.OSCAR.Properties, h.cfg.OSCAR.TomcatUser = props, user.Name
	h.cfg.Paths = config.Paths{StateDir: filepath.Join(base, "state"), BackupDir: filepath.Join(base, "backups"),
		CronFile: filepath.Join(base, "cron.d", "emrkit"), PGPPassphraseFile: filepath.Join(base, "etc", "pgp-export.pass")}
	os.Mkdir(filepath.Dir(h.cfg.Paths.CronFile), 0o755)
	if mode == "public-key" {
		ks, err := pgp.GenerateKey("Clinic <admin@clinic.invalid>", pgp.Curve25519)
		if err != nil {
			t.Fatal(err)
		}
		h.cfg.PGP.PublicKey = filepath.Join(base, "clinic.pub.asc")
		os.WriteFile(h.cfg.PGP.PublicKey, ks.Public, 0o644)
	}
	if err := config.Write(h.config, h.cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

// run executes `emrkit ARGS...` through the real command tree, without a terminal.
func (h *host) run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{Version: "0.6.0-1", In: strings.NewReader(""), Out: &out, Err: &errb,
		Host: plan.Host{ConfigPath: h.config, PGP: pgp.Env{Algorithm: pgp.Curve25519}}}
	cmd := root.New(f)
	cmd.SetArgs(append([]string{"--config", h.config}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	if err != nil && err.Error() != "" {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), cmdutil.ExitCode(err)
}

// snapshot is every file under base: mode, owner and content.
func (h *host) snapshot() map[string]string {
	h.t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(h.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		files[p] = v
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return files
}

// TestDryRunOnFreshHost: `apply --dry-run` on a host emrkit has never touched prints the
// whole plan, in every pgp mode, exits 0 and changes nothing: no state dir, no file, no
// row. In generate mode the steps that use the key still to be generated are planned.
func TestDryRunOnFreshHost(t *testing.T) {
	srv := mariadbtest.Start(t)
	for i, tc := range []struct {
		mode string
		want []string
	}{
		{"generate", []string{
			"would apply        generate the export key (curve25519) in ",
			"would apply        export key (generated key) in emrkit-t-",
			"would apply        set PGP_KEY to the export key's fingerprint in ",
		}},
		{"public-key", []string{
			"would apply        export key ",
			"would apply        set PGP_KEY to the export key's fingerprint in ",
		}},
		{"symmetric", []string{
			"would apply        generate the export passphrase ",
			"would apply        set PGP_KEY=",
		}},
		{"none", nil},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := freshHost(t, srv, fmt.Sprintf("oscar_%d", i), tc.mode)
			before, rows := h.snapshot(), srv.Dump(t, h.cfg.Database.Name, "security")
			out, errs, code := h.run("apply", "--dry-run")
			if code != 0 || !strings.Contains(out, "dry run: ") || !strings.Contains(out, "nothing was changed") {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			last := -1
			for _, w := range tc.want {
				at := strings.Index(out, w)
				if at < 0 || at < last {
					t.Errorf("plan lacks %q after the step before\n%s", w, out)
				}
				last = at
			}
			if strings.Contains(out+errs, "would defer") {
				t.Errorf("a step was deferred on a host that has everything\n%s%s", out, errs)
			}
			after := h.snapshot()
			for p, v := range after {
				if before[p] != v {
					t.Errorf("dry run changed %s: %q, was %q", p, v, before[p])
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("dry run removed %s", p)
				}
			}
			if srv.Dump(t, h.cfg.Database.Name, "security") != rows {
				t.Error("dry run changed the security table")
			}
			// The plan the dry run showed is the one a real run carries out.
			if out, errs, code := h.run("apply"); code != 0 || !strings.Contains(out, "applied ") {
				t.Fatalf("apply after the dry run: exit %d\n%s%s", code, out, errs)
			}
			props, _ := os.ReadFile(h.cfg.OSCAR.Properties)
			if key := regexp.MustCompile(`(?m)^PGP_KEY=(.*)$`).FindStringSubmatch(string(props)); tc.mode == "generate" &&
				(key == nil || !regexp.MustCompile(`^[0-9A-F]{40}$`).MatchString(key[1])) {
				t.Errorf("PGP_KEY after apply: %q, want the generated key's fingerprint", key)
			}
		})
	}
}
