package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/config"
	fw "github.com/emrkit/emrkit/pkg/firewall"
	"github.com/emrkit/emrkit/pkg/journal"
)

// These tests cover the command's wiring without ufw; applying and reverting with the real
// ufw is tested in pkg/firewall's namespace test, which runs this command's code.

func testOptions(t *testing.T) (*Options, *bytes.Buffer, config.Config) {
	t.Helper()
	var out bytes.Buffer
	cfg := config.Default()
	cfg.Paths.StateDir = t.TempDir()
	env := fw.Env{UFW: fw.UFW{Path: filepath.Join(t.TempDir(), "no-ufw")}, ProfileDir: t.TempDir()}
	return &Options{F: &cmdutil.Factory{Out: &out, Err: &out}, Env: env}, &out, cfg
}

func put(t *testing.T, dir string, entries ...journal.Entry) {
	t.Helper()
	j, err := journal.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, e := range entries {
		if err := j.Put(e); err != nil {
			t.Fatal(err)
		}
	}
}

func state(t *testing.T, dir string) map[string]journal.State {
	t.Helper()
	es, err := journal.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]journal.State{}
	for _, e := range es {
		m[e.ID] = e.State
	}
	return m
}

func TestCommandShape(t *testing.T) {
	cmd := New(&cmdutil.Factory{})
	for _, name := range []string{"apply", "status", "revert"} {
		sub, _, err := cmd.Find([]string{name})
		if err != nil || sub.Name() != name {
			t.Fatalf("no %s subcommand: %v", name, err)
		}
		if dry := sub.Flags().Lookup("dry-run"); (dry != nil) != (name != "status") {
			t.Errorf("%s: --dry-run present = %v", name, dry != nil)
		}
	}
}

// With firewall.enable false, apply reverts emrkit's firewall entries, and only those: the
// rest of the journal belongs to `emrkit apply`.
func TestApplyDisabledRevertsOnlyFirewallEntries(t *testing.T) {
	o, out, cfg := testOptions(t)
	cfg.Firewall.Enable = false
	profile := filepath.Join(o.Env.ProfileDir, fw.ProfileFile)
	content := "[emrkit-oscar]\ntitle=t\ndescription=d\nports=8443/tcp\n"
	if err := os.WriteFile(profile, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	desired, _ := json.Marshal(map[string]string{"path": profile, "name": "emrkit-oscar", "content": content})
	put(t, cfg.Paths.StateDir,
		journal.Entry{ID: "props.key:/x#TOTP", Kind: "props.key", Target: "/x#TOTP", Since: "0.1.0", State: journal.Done,
			Desired: json.RawMessage(`{}`), Before: json.RawMessage(`{}`)},
		journal.Entry{ID: fw.KindProfile + ":" + profile, Kind: fw.KindProfile, Target: profile, Since: fw.Since, State: journal.Done,
			Desired: desired, Before: json.RawMessage(`{"present":false}`)},
	)
	if _, err := Apply(context.Background(), o, cfg); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	st := state(t, cfg.Paths.StateDir)
	if st["props.key:/x#TOTP"] != journal.Done || st[fw.KindProfile+":"+profile] != journal.Undone {
		t.Fatalf("journal after apply with the firewall disabled: %v\n%s", st, out)
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Fatalf("profile not removed: %v", err)
	}
}

func TestRevertDryRunPrintsUFWCommands(t *testing.T) {
	o, out, cfg := testOptions(t)
	o.DryRun = true
	r := fw.Rule{Action: fw.Allow, Port: 22, Proto: "tcp", From: fw.Any, Comment: fw.Comment}
	d, _ := json.Marshal(r)
	put(t, cfg.Paths.StateDir,
		journal.Entry{ID: fw.KindRule + ":" + r.Target(), Kind: fw.KindRule, Target: r.Target(), Since: fw.Since, State: journal.Done,
			Desired: d, Before: json.RawMessage(`{"present":false}`)},
		journal.Entry{ID: fw.KindEnable + ":ufw", Kind: fw.KindEnable, Target: "ufw", Since: fw.Since, State: journal.Done,
			Desired: json.RawMessage(`{"enabled":true,"ssh_ports":[22]}`), Before: json.RawMessage(`{"enabled":false}`)},
	)
	if _, err := Revert(context.Background(), o, cfg); err != nil {
		t.Fatalf("revert --dry-run: %v\n%s", err, out)
	}
	text := out.String()
	disable := strings.Index(text, "  ufw disable")
	del := strings.Index(text, "  ufw delete allow proto tcp from any to any port 22 comment 'emrkit'")
	if disable < 0 || del < 0 || disable > del {
		t.Fatalf("revert --dry-run output (disable must come first):\n%s", text)
	}
	for id, s := range state(t, cfg.Paths.StateDir) {
		if s != journal.Done {
			t.Errorf("dry run changed %s to %s", id, s)
		}
	}
}

func TestStatusWithoutUFW(t *testing.T) {
	o, out, cfg := testOptions(t)
	err := Status(context.Background(), o, cfg)
	if cmdutil.ExitCode(err) != cmdutil.ExitProblem || !strings.Contains(out.String(), "ufw not installed; apt install ufw") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}
