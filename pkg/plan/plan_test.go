package plan

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/step"
)

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	dir := t.TempDir()
	cfg.OSCAR.Properties = filepath.Join(dir, "oscar.properties")
	cfg.Paths = config.Paths{StateDir: dir + "/state", BackupDir: dir + "/backups", CronFile: dir + "/emrkit"}
	cfg.Database.Socket = dir + "/no-such.sock"
	cfg.Firewall.Enable = false // the firewall package tests ufw in its own namespaces
	cfg.PGP.Mode = "none"       // pkg/pgp tests its steps with a throwaway Tomcat user
	return cfg
}

func build(t *testing.T, cfg config.Config, h Host, v string) []step.Step {
	t.Helper()
	p, err := New(cfg, h, v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Steps
}

func TestSinceFiltersSteps(t *testing.T) {
	cfg := testConfig(t)
	for v, want := range map[string]int{"0.0.9": 0, "0.1.0~rc1": 0, "0.1.0": 5, "0.1.0-1": 5, "0.4.1": 5, "0.5.0": 6, "9.0": 6} {
		if got := len(build(t, cfg, DefaultHost(), v)); got != want {
			t.Errorf("version %s: %d steps, want %d", v, got, want)
		}
	}
	if _, err := New(cfg, Host{}, "not a version"); err == nil {
		t.Error("bad version accepted")
	}
}

func TestOrderTOTPSwitchLast(t *testing.T) {
	steps := build(t, testConfig(t), DefaultHost(), "0.1.0")
	kinds := []string{}
	for _, s := range steps {
		kinds = append(kinds, s.Kind())
	}
	want := []string{"twofa.columns", "twofa.columns", "twofa.user", "file", "props.key"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("order %v", kinds)
	}
}

func TestWithoutDatabaseEverythingDefers(t *testing.T) {
	cfg := testConfig(t)
	os.WriteFile(cfg.OSCAR.Properties, []byte("TOTP=0\n"), 0o644)
	ctx := context.Background()
	for _, s := range build(t, cfg, DefaultHost(), "0.1.0") {
		_, err := s.Check(ctx)
		if _, ok := step.IsDeferred(err); !ok {
			t.Errorf("%s: want deferred with no database, got %v", s.ID(), err)
		}
	}
}

func TestPropertiesDetection(t *testing.T) {
	cfg := testConfig(t)
	cfg.OSCAR.Properties = ""
	dir := t.TempDir()
	p := filepath.Join(dir, "tomcat9", "oscar.properties")
	h := Host{PropertiesCandidates: []string{filepath.Join(dir, "tomcat8", "oscar.properties"), p}, ConfigPath: config.DefaultPath}
	if _, found := PropertiesPath(cfg, h); found {
		t.Fatal("found a file that does not exist")
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, nil, 0o644)
	if got, found := PropertiesPath(cfg, h); !found || got != p {
		t.Fatalf("detected %s %v", got, found)
	}
}

func TestOpenEMRProfileHasNoOSCARSteps(t *testing.T) {
	cfg := testConfig(t)
	cfg.Profile = "openemr"
	if steps := build(t, cfg, DefaultHost(), "0.1.0"); len(steps) != 0 {
		t.Fatalf("%v", steps)
	}
}

func TestEveryKindHasAnUndoer(t *testing.T) {
	cfg := testConfig(t)
	cfg.Migrations = config.KnownMigrations
	p, err := New(cfg, DefaultHost(), "999")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Steps {
		if _, ok := p.Undoers[s.Kind()]; !ok {
			t.Errorf("kind %s has no undoer", s.Kind())
		}
	}
}

// TestMigrationsRunLastFromTheirRelease: data migrations are planned from release 0.4.0, in
// catalogue order whatever the configured order, after every security step.
func TestMigrationsRunLastFromTheirRelease(t *testing.T) {
	cfg := testConfig(t)
	cfg.Migrations = []string{"roster-enrolled-to", "middle-names"}
	if steps := build(t, cfg, DefaultHost(), "0.3.0"); len(steps) != 5 {
		t.Fatalf("0.3.0 plans %d steps, want the 5 of 2FA", len(steps))
	}
	steps := build(t, cfg, DefaultHost(), "0.4.0")
	var kinds []string
	for _, s := range steps {
		kinds = append(kinds, s.Kind())
	}
	want := []string{"twofa.columns", "twofa.columns", "twofa.user", "file", "props.key", "migrate.middle-names", "migrate.roster-enrolled-to"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("order %v", kinds)
	}
	if got := steps[5].Target(); got != "oscar_15.demographic" {
		t.Fatalf("target %s", got)
	}
	cfg.Migrations = []string{"drop-everything"}
	if _, err := New(cfg, DefaultHost(), "0.4.0"); err == nil {
		t.Fatal("unknown migration planned")
	}
}

// TestPortalWaitsForOpenEMR: with no OpenEMR on the host the portal is one deferred step from
// 0.6.0 and none before; it runs after the hardening whose database it shares.
func TestPortalWaitsForOpenEMR(t *testing.T) {
	cfg := testConfig(t)
	cfg.Profile = "openemr"
	cfg.Portal.Enable = true
	h := DefaultHost()
	h.OpenEMR.Roots = []string{filepath.Join(t.TempDir(), "no-openemr")}
	kinds := func(v string) []string {
		var k []string
		for _, s := range build(t, cfg, h, v) {
			if strings.HasPrefix(s.Kind(), "openemr.") || strings.HasPrefix(s.Kind(), "portal.") {
				k = append(k, s.Kind())
			}
		}
		return k
	}
	if k := kinds("0.5.0"); slices.Contains(k, "portal.install") {
		t.Fatalf("0.5.0 plans the portal: %v", k)
	}
	k := kinds("0.6.0")
	if !slices.Equal(k, []string{"openemr.install", "portal.install"}) {
		t.Fatalf("0.6.0 without OpenEMR plans %v, want the hardening's and the portal's deferrals", k)
	}
	steps := build(t, cfg, h, "0.6.0")
	s := steps[len(steps)-1]
	if _, err := s.Check(context.Background()); err == nil {
		t.Fatal("the portal's step without OpenEMR does not defer")
	} else if _, ok := step.IsDeferred(err); !ok {
		t.Fatalf("the portal's step fails instead of deferring: %v", err)
	}
}
