package openemr

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/openemrfixture"
	"github.com/emrkit/emrkit/pkg/apache"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fileperm"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
)

func TestParseBothFormats(t *testing.T) {
	for _, major := range []int{7, 8} {
		files := openemrfixture.Tree{Major: major, Database: "openemr"}.Files()
		v, err := ParseVersion(files["version.php"])
		if err != nil || v.MajorNumber() != major || v.Database == 0 {
			t.Fatalf("%d: version %+v %v", major, v, err)
		}
		c, err := ParseSQLConf(files["sites/default/sqlconf.php"])
		if err != nil || c.Database != "openemr" || c.Host != "localhost" || c.Port != "3306" || !c.Configured {
			t.Fatalf("%d: sqlconf %+v %v", major, c, err)
		}
	}
	if c, _ := ParseSQLConf("<?php\n$dbase\t= 'openemr';\n$config = 0; ////\n"); c.Configured {
		t.Fatal("$config = 0 read as set up")
	}
	if _, err := ParseVersion("<?php echo 1;"); err == nil {
		t.Fatal("not a version.php: no error")
	}
	if _, err := ParseSQLConf("<?php\n$host = 'x';\n"); err == nil {
		t.Fatal("sqlconf.php without $dbase: no error")
	}
}

func TestDetect(t *testing.T) {
	root := filepath.Join(t.TempDir(), "openemr")
	if err := (openemrfixture.Tree{Major: 7, Database: "oe"}).Write(root); err != nil {
		t.Fatal(err)
	}
	cfg := config.OpenEMR{WebUser: "root"}
	in, err := Detect(cfg, []string{"/nonexistent", root})
	if err != nil || in.Root != root || in.Version.String() != "7.0.2" || !slices.Equal(in.Sites, []string{"default"}) || in.SQLConf.Database != "oe" {
		t.Fatalf("detect: %+v %v", in, err)
	}
	// Not there: deferred; a configured root or site that is wrong: an error naming the key.
	_, err = Detect(config.OpenEMR{}, []string{"/nonexistent"})
	if _, ok := err.(*NotInstalledError); !ok {
		t.Fatalf("no install: %v", err)
	}
	for want, c := range map[string]config.OpenEMR{
		"openemr.root":     {Root: "/nonexistent"},
		"openemr.site":     {Root: root, Site: "clinic2"},
		"openemr.web_user": {Root: root, WebUser: "no-such-user"},
	} {
		if _, err := Detect(c, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
	// Before setup ($config = 0) nothing may be locked: deferred.
	conf := filepath.Join(root, "sites/default/sqlconf.php")
	data, _ := os.ReadFile(conf)
	os.WriteFile(conf, []byte(strings.Replace(string(data), "$config = 1;", "$config = 0;", 1)), 0o644)
	if _, err := Detect(config.OpenEMR{Root: root}, nil); err == nil || !strings.Contains(err.Error(), "not set up yet") {
		t.Fatalf("not set up: %v", err)
	}
}

func TestStepsLockScriptsAndConfOnly(t *testing.T) {
	root := filepath.Join(t.TempDir(), "openemr")
	(openemrfixture.Tree{Major: 8, Database: "oe"}).Write(root)
	cfg := config.Default()
	cfg.Profile, cfg.OpenEMR = "openemr", config.OpenEMR{Root: root}
	h, err := Steps(cfg, Env{Apache: apache.DefaultEnv()}, Since)
	if err != nil {
		t.Fatal(err)
	}
	www, _ := user.Lookup("www-data")
	gid, _ := strconv.Atoi(www.Gid)
	var locked []string
	for _, s := range h.Steps {
		if p, ok := s.(fileperm.Step); ok {
			locked = append(locked, strings.TrimPrefix(p.Path, root+"/")+" "+p.Want.String())
		}
	}
	want := []string{"admin.php 0600 0:0", "setup.php 0600 0:0", "sql_upgrade.php 0600 0:0", "sql_patch.php 0600 0:0",
		"acl_upgrade.php 0600 0:0", "ippf_upgrade.php 0600 0:0", "sites/default/sqlconf.php 0640 0:" + strconv.Itoa(gid)}
	if !slices.Equal(locked, want) {
		t.Fatalf("locked %q, want %q", locked, want)
	}
	if n := len(h.Steps); n != len(want)+1+5 {
		t.Fatalf("%d steps, want the files, the Apache snippet and 5 globals", n)
	}
	if h.DB.Config.Name != "oe" {
		t.Fatalf("globals go to %q, not sqlconf.php's database", h.DB.Config.Name)
	}
	// https_redirect without an SSL site refuses before anything changes.
	cfg.OpenEMR.HTTPSRedirect = true
	if _, err := Steps(cfg, Env{Apache: apache.Env{Dir: t.TempDir()}}, Since); err == nil || !strings.Contains(err.Error(), "no SSL site") {
		t.Fatalf("redirect without SSL: %v", err)
	}
	// Debian enables a site as a link into sites-available; that link is read through.
	ad := t.TempDir()
	for _, d := range []string{"mods-enabled", "sites-available", "sites-enabled"} {
		if err := os.Mkdir(filepath.Join(ad, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for path, body := range map[string]string{"mods-enabled/ssl.load": "LoadModule ssl_module x\n",
		"sites-available/default-ssl.conf": "<VirtualHost *:443>\n\tSSLEngine on\n</VirtualHost>\n"} {
		if err := os.WriteFile(filepath.Join(ad, path), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../sites-available/default-ssl.conf", filepath.Join(ad, "sites-enabled", "default-ssl.conf")); err != nil {
		t.Fatal(err)
	}
	if _, err := Steps(cfg, Env{Apache: apache.Env{Dir: ad}}, Since); err != nil {
		t.Fatalf("redirect with an SSL site enabled by a2ensite's link: %v", err)
	}
}

// TestPasswordPolicyFollowsTheVersion: 4.1.1's own globals metadata has no minimum length and
// no failed-login limit, and password_history is yes/no: emrkit writes three globals (history
// as 1) and names the two it cannot enforce; 7.x defines all five.
func TestPasswordPolicyFollowsTheVersion(t *testing.T) {
	for _, c := range []struct {
		major       int
		want        string
		unenforced  []string
		versionName string
	}{
		{4, "secure_password=1 password_history=1 password_expiration_days=180", []string{"gbl_minimum_password_length", "password_max_failed_logins"}, "4.1.1"},
		{7, "secure_password=1 gbl_minimum_password_length=12 password_history=5 password_expiration_days=180 password_max_failed_logins=10", nil, ""},
	} {
		root := filepath.Join(t.TempDir(), "openemr")
		if err := (openemrfixture.Tree{Major: c.major, Database: "oe"}).Write(root); err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.Profile, cfg.OpenEMR = "openemr", config.OpenEMR{Root: root, WebUser: "root"}
		h, err := Steps(cfg, Env{Apache: apache.DefaultEnv()}, Since)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range h.Steps {
			if g, ok := s.(GlobalStep); ok {
				got = append(got, g.Name+"="+strconv.Itoa(g.Value))
			}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("OpenEMR %d: globals %q, want %q", c.major, got, c.want)
		}
		in, _ := Detect(cfg.OpenEMR, nil)
		p, err := in.PasswordPolicy(cfg.OpenEMR.PasswordPolicy)
		if err != nil || !slices.Equal(p.Unenforceable, c.unenforced) {
			t.Errorf("OpenEMR %d: unenforceable %q %v, want %q", c.major, p.Unenforceable, err, c.unenforced)
		}
		if note := p.Note(in.Version); c.versionName != "" && !strings.Contains(note, "OpenEMR "+c.versionName+" does not define gbl_minimum_password_length, password_max_failed_logins") ||
			c.versionName == "" && note != "" {
			t.Errorf("OpenEMR %d: note %q", c.major, note)
		}
	}
	// Without its metadata emrkit does not guess which globals count: none is written, and it says so.
	root := filepath.Join(t.TempDir(), "openemr")
	(openemrfixture.Tree{Major: 7, Database: "oe"}).Write(root)
	os.Remove(filepath.Join(root, GlobalsMetadata))
	cfg := config.Default()
	cfg.Profile, cfg.OpenEMR = "openemr", config.OpenEMR{Root: root, WebUser: "root"}
	h, err := Steps(cfg, Env{Apache: apache.DefaultEnv()}, Since)
	if err != nil || slices.ContainsFunc(h.Steps, func(s step.Step) bool { _, ok := s.(GlobalStep); return ok }) ||
		len(h.notes) != 1 || !strings.Contains(h.notes[0], "globals metadata") {
		t.Fatalf("no globals.inc.php: %v %q", err, h.notes)
	}
}

// TestGlobals: apply, re-apply (nothing), an edit in OpenEMR's Globals screen between apply
// and undo kept, every other row back: the full dump after undo equals the one before, but
// for the kept edit.
func TestGlobals(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	dbc := srv.CreateDatabase(t, "openemr_g")
	raw := srv.DB(t, "openemr_g")
	for _, q := range strings.Split(strings.TrimSpace(openemrfixture.GlobalsSQL), ";\n") {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	before := srv.Dump(t, "openemr_g")
	db := &mariadb.Shared{Config: dbc}
	defer db.Close()
	var steps []step.Step
	for _, g := range (config.PasswordPolicy{}).Globals() {
		steps = append(steps, GlobalStep{DB: db, Name: g.Name, Value: g.Value, SinceVersion: Since})
	}
	j, err := journal.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var out strings.Builder
	r := &step.Runner{Journal: j, Out: &out, Undoers: Undoers(Env{}, dbc)}
	all := func(journal.Entry) bool { return true }

	rep, err := r.Apply(ctx, steps)
	// secure_password=1 and password_history=5 were already right: not journaled.
	if err != nil || rep.Applied != 3 || rep.Unchanged != 2 {
		t.Fatalf("apply: %+v %v\n%s", rep, err, out.String())
	}
	got := map[string]string{}
	rows, _ := raw.Query("SELECT gl_name, gl_value FROM globals WHERE gl_index = 0")
	for rows.Next() {
		var n, v string
		rows.Scan(&n, &v)
		got[n] = v
	}
	rows.Close()
	for _, g := range (config.PasswordPolicy{}).Globals() {
		if got[g.Name] != strconv.Itoa(g.Value) {
			t.Errorf("%s = %q, want %d", g.Name, got[g.Name], g.Value)
		}
	}
	if rep, err := r.Apply(ctx, steps); err != nil || rep.Changed() {
		t.Fatalf("re-apply: %+v %v", rep, err)
	}
	if _, err := r.Revert(ctx, all); err != nil {
		t.Fatal(err)
	}
	if after := srv.Dump(t, "openemr_g"); after != before {
		t.Fatalf("dump after undo differs:\n%s\n---\n%s", before, after)
	}

	// An admin raises the expiry in OpenEMR between apply and undo: kept, the rest undone.
	r.Apply(ctx, steps)
	raw.Exec("UPDATE globals SET gl_value = '90' WHERE gl_name = 'password_expiration_days'")
	rep, err = r.Revert(ctx, all)
	if err != nil || rep.Kept != 1 || rep.Undone != 2 {
		t.Fatalf("revert after an edit: %+v %v\n%s", rep, err, out.String())
	}
	want := before
	after := srv.Dump(t, "openemr_g")
	if !strings.Contains(after, "('password_expiration_days',0,'90')") ||
		strings.Replace(after, "INSERT INTO `globals` VALUES ('password_expiration_days',0,'90');\n", "", 1) != want {
		t.Fatalf("after undo with an edit:\n%s\nwant the edit kept and the rest as before:\n%s", after, want)
	}
}

func TestAccountWarnings(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	srv.CreateDatabase(t, "openemr_a")
	db := srv.DB(t, "openemr_a")
	base, err := AccountWarnings(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE USER ''@'%'", "CREATE USER 'root'@'10.0.0.%' IDENTIFIED BY 'x'", "CREATE USER 'portal'@'localhost'",
		"CREATE USER 'locked'@'localhost' ACCOUNT LOCK", "CREATE ROLE clinicians", "CREATE USER 'ok'@'localhost' IDENTIFIED BY 'secret'",
		"CREATE DATABASE test", "CREATE DATABASE test_1",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	got, err := AccountWarnings(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"''@'%'", "root@'10.0.0.%'", "portal@'localhost'", "`test` database is there (any account may use it): test, test_1"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	for _, not := range []string{"locked@", "clinicians", "ok@"} {
		if strings.Contains(all, not) && !strings.Contains(strings.Join(base, "\n"), not) {
			t.Errorf("warnings name %q, which cannot log in or has a password:\n%s", not, all)
		}
	}
}
