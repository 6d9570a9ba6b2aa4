package plan

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/step"
)

func TestSinceFiltersSteps(t *testing.T) {
	cfg := config.Default()
	cfg.OSCAR.Properties = "/x/oscar.properties"
	for v, want := range map[string]int{"0.0.9": 0, "0.1.0~rc1": 0, "0.1.0": 1, "0.1.0-1": 1, "9.0": 1} {
		steps, err := Build(cfg, Host{}, v)
		if err != nil || len(steps) != want {
			t.Errorf("version %s: %d steps (%v), want %d", v, len(steps), err, want)
		}
	}
	if _, err := Build(cfg, Host{}, "not a version"); err == nil {
		t.Error("bad version accepted")
	}
}

func TestPropertiesDetectionAndDeferral(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tomcat9", "oscar.properties")
	h := Host{PropertiesCandidates: []string{filepath.Join(dir, "tomcat8", "oscar.properties"), p}}
	steps, err := Build(config.Default(), h, "0.1.0")
	if err != nil || len(steps) != 1 {
		t.Fatal(steps, err)
	}
	if _, ok := steps[0].(step.Unavailable); !ok {
		t.Fatalf("want deferral without oscar.properties, got %T", steps[0])
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, nil, 0o644)
	steps, _ = Build(config.Default(), h, "0.1.0")
	if steps[0].Target() != p+"#TOTP" {
		t.Fatalf("detected %s", steps[0].Target())
	}
}

func TestOpenEMRProfileHasNoOSCARSteps(t *testing.T) {
	cfg := config.Default()
	cfg.Profile = "openemr"
	if steps, _ := Build(cfg, Host{}, "0.1.0"); len(steps) != 0 {
		t.Fatalf("%v", steps)
	}
}

func TestEveryKindHasAnUndoer(t *testing.T) {
	cfg := config.Default()
	cfg.OSCAR.Properties = "/x"
	steps, _ := Build(cfg, Host{}, "999")
	for _, s := range steps {
		if _, ok := Undoers()[s.Kind()]; !ok {
			t.Errorf("kind %s has no undoer", s.Kind())
		}
	}
}
