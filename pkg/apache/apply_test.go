package apache

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeApache is a stopped Apache whose tools are scripts: a2enconf/a2disconf make and remove
// the link, and apache2ctl's test fails while an enabled snippet says BAD. Each test is
// counted in ctl.log: the rollback logic is what is under test, not Apache (e2e runs that).
func fakeApache(t *testing.T) (Env, func() int) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"conf-available", "conf-enabled", "state", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := func(name, body string) string {
		p := filepath.Join(dir, "bin", name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\nfor n; do :; done\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := Env{Dir: dir, StateDir: filepath.Join(dir, "state"), PIDFile: filepath.Join(dir, "apache2.pid"),
		EnConf:  script("a2enconf", `ln -sf ../conf-available/$n.conf `+dir+`/conf-enabled/$n.conf`),
		DisConf: script("a2disconf", `rm -f `+dir+`/conf-enabled/$n.conf`),
		Ctl:     script("apache2ctl", `echo "$1" >>`+dir+`/ctl.log; ! grep -qs BAD `+dir+`/conf-enabled/*.conf || { echo "Syntax error"; exit 1; }`)}
	tests := func() int {
		data, _ := os.ReadFile(filepath.Join(dir, "ctl.log"))
		return strings.Count(string(data), "configtest")
	}
	return env, tests
}

func applyConf(t *testing.T, env Env, content string) error {
	t.Helper()
	s := ConfStep{Env: env, Name: "emrkit-x", Content: []byte(content)}
	d, _, err := s.Capture(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Apply(context.Background(), json.RawMessage(d))
}

func TestConfStepTestsOnceAndRollsBack(t *testing.T) {
	env, tests := fakeApache(t)
	if err := applyConf(t, env, "ServerTokens Prod\n"); err != nil || tests() != 1 {
		t.Fatalf("good snippet: %v, %d configuration tests (want 1)", err, tests())
	}
	if ok, err := (ConfStep{Env: env, Name: "emrkit-x", Content: []byte("ServerTokens Prod\n")}).Check(context.Background()); !ok || err != nil {
		t.Fatalf("after apply the snippet is not in place and enabled: %v %v", ok, err)
	}

	// emrkit's own change fails the test: the snippet that was there before is back.
	err := applyConf(t, env, "BAD\n")
	if err == nil || !strings.Contains(err.Error(), "with emrkit's") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("a snippet that breaks the configuration: %v", err)
	}
	if got, _ := os.ReadFile(env.available("emrkit-x")); string(got) != "ServerTokens Prod\n" {
		t.Errorf("after the failed apply the snippet holds %q, want the one before", got)
	}

	// Someone else broke the configuration: emrkit says so, and adds nothing.
	if err := os.WriteFile(filepath.Join(env.Dir, "conf-enabled", "admin.conf"), []byte("BAD\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := ConfStep{Env: env, Name: "emrkit-y", Content: []byte("TraceEnable Off\n")}
	d, _, _ := s.Capture(context.Background())
	err = s.Apply(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), "even without emrkit's change") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a configuration broken by someone else: %v", err)
	}
	for _, p := range []string{env.available("emrkit-y"), env.enabledPath(env.conf(), "emrkit-y")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left behind: %v", p, err)
		}
	}
}
