package doctor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/openemrfixture"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/openemr"
)

func byID(checks []Check) map[string]Check {
	out := map[string]Check{}
	for _, c := range checks {
		out[c.ID] = c
	}
	return out
}

// TestMariaDBServerSettings: local_infile on (MariaDB's default), secure_file_priv unset (in
// MariaDB: no limit) and names resolved (the default) are warnings naming the setting; a server
// started with them closed passes.
func TestMariaDBServerSettings(t *testing.T) {
	for _, c := range []struct {
		args []string
		want map[string]Status
	}{
		{nil, map[string]Status{"mariadb.local-infile": Warn, "mariadb.secure-file-priv": Warn, "mariadb.bind-address": Pass, "mariadb.skip-name-resolve": Warn, "mariadb.root-account": Pass}},
		{[]string{"--local-infile=0", "--secure-file-priv=" + t.TempDir(), "--skip-name-resolve"},
			map[string]Status{"mariadb.local-infile": Pass, "mariadb.secure-file-priv": Pass, "mariadb.bind-address": Pass, "mariadb.skip-name-resolve": Pass, "mariadb.root-account": Pass}},
	} {
		srv := mariadbtest.StartWith(t, mariadbtest.Options{Args: c.args})
		srv.CreateDatabase(t, "emr")
		h := &host{ctx: context.Background(), db: srv.DB(t, "emr")}
		got := byID(h.mariadbServer())
		for id, want := range c.want {
			if got[id].Status != want {
				t.Errorf("%v: %s is %s (%s), want %s", c.args, id, got[id].Status, got[id].Finding, want)
			}
		}
		if f := got["mariadb.local-infile"]; f.Status == Warn && !strings.Contains(f.Fix, "local_infile = 0") {
			t.Errorf("the local_infile warning names no fix: %+v", f)
		}
	}
}

// TestOpenEMRPolicy: on the 7.x fixture, one of two active users has no MFA (named with
// --verbose only; the inactive user and the group row are not counted), the idle logoff
// and per-address lockout are OpenEMR's lax defaults, the audit log is on, the APIs are
// off; an API turned on over plain HTTP fails. On 4.1.1 MFA and the lockout do not exist:
// said so, never read from rows.
func TestOpenEMRPolicy(t *testing.T) {
	srv := mariadbtest.Start(t)
	for _, major := range []int{7, 4} {
		name := "oe" + string(rune('0'+major))
		root := filepath.Join(t.TempDir(), "openemr")
		if err := (openemrfixture.Tree{Major: major, Database: name}).Write(root); err != nil {
			t.Fatal(err)
		}
		in, err := openemr.Detect(config.OpenEMR{Root: root, WebUser: "root"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv.CreateDatabase(t, name)
		db := srv.DB(t, name)
		for _, q := range strings.Split(strings.TrimSpace(openemrfixture.GlobalsSQL+openemrfixture.UsersSQL(major)), ";\n") {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		h := &host{ctx: context.Background(), db: db, env: Env{OpenEMRURL: "http://127.0.0.1/openemr"}}
		got := byID(h.openemrPolicy(in))
		want := map[string]Status{"openemr.version": Pass, "openemr.mfa": Warn, "openemr.idle-logoff": Warn, "openemr.audit-log": Pass,
			"openemr.ip-lockout": Warn, "openemr.api-https": Pass}
		for id, w := range want {
			if got[id].Status != w {
				t.Errorf("OpenEMR %d: %s is %s (%s), want %s", major, id, got[id].Status, got[id].Finding, w)
			}
		}
		switch major {
		case 7:
			if f := got["openemr.mfa"].Finding; !strings.HasPrefix(f, "1 of 2 active users") || strings.Contains(f, "doctor") {
				t.Errorf("MFA finding: %q", f)
			}
			h.env.Verbose = true
			if f := byID(h.openemrPolicy(in))["openemr.mfa"].Finding; !strings.HasSuffix(f, ": doctor") {
				t.Errorf("MFA finding with --verbose: %q", f)
			}
			if !strings.Contains(got["openemr.version"].Finding, "OpenEMR 7.0.2 (patch 0, database 469)") {
				t.Errorf("version: %q", got["openemr.version"].Finding)
			}
			db.Exec("UPDATE globals SET gl_value = '0' WHERE gl_name = 'enable_auditlog'")
			if c := byID(h.openemrPolicy(in))["openemr.audit-log"]; c.Status != Fail {
				t.Errorf("audit log off: %+v", c)
			}
			db.Exec("UPDATE globals SET gl_value = '1' WHERE gl_name = 'rest_fhir_api'")
			if c := byID(h.openemrPolicy(in))["openemr.api-https"]; c.Status != Fail || !strings.HasPrefix(c.Finding, "rest_fhir_api on while") {
				t.Errorf("FHIR on over plain HTTP: %+v", c)
			}
			h.env.Config.OpenEMR.HTTPSRedirect = true
			if c := byID(h.openemrPolicy(in))["openemr.api-https"]; c.Status != Pass {
				t.Errorf("FHIR on with the redirect to HTTPS: %+v", c)
			}
		case 4:
			if f := got["openemr.mfa"].Finding; !strings.Contains(f, "has no MFA") {
				t.Errorf("4.1.1 MFA finding: %q", f)
			}
			if f := got["openemr.ip-lockout"].Finding; !strings.Contains(f, "cannot lock out an address") {
				t.Errorf("4.1.1 lockout finding (the row is there, 4.1.1 does not read it): %q", f)
			}
		}
	}
}
