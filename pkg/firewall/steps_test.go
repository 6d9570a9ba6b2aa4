package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// cannedEnv answers the SSH probes with captured output and runs no ufw: these tests cover
// decisions only; ufw itself is exercised in the namespace test.
func cannedEnv(t *testing.T, sshdT, ss string, env map[string]string, inChroot bool) Env {
	t.Helper()
	return Env{
		UFW: UFW{Path: "/nonexistent/ufw", Exec: func(context.Context, []string, []string) ([]byte, []byte, error) {
			t.Fatal("these tests must not run ufw")
			return nil, nil, nil
		}},
		Exec: func(_ context.Context, argv, _ []string) ([]byte, []byte, error) {
			switch argv[0] {
			case "sshd":
				return []byte(sshdT), nil, nil
			case "ss":
				return []byte(ss), nil, nil
			}
			return nil, nil, errors.New("unexpected " + argv[0])
		},
		InChroot:     func(context.Context) (bool, error) { return inChroot, nil },
		Getenv:       func(k string) string { return env[k] },
		SSHD:         "sshd",
		SS:           "ss",
		ProfileDir:   t.TempDir(),
		DefaultsFile: "testdata/default-ufw.txt",
	}
}

func ids(steps []step.Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.ID())
	}
	return out
}

func TestStepsOrder(t *testing.T) {
	env := cannedEnv(t, readTestdata(t, "sshd-T-default.txt"), readTestdata(t, "ss-Hltnp.txt"), nil, false)
	steps, err := StepsContext(context.Background(), defaultFirewall(), "oscar", env, Since)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"firewall.preflight:ufw",
		"firewall.profile:" + filepath.Join(env.ProfileDir, "emrkit"),
		"firewall.rule:allow 22/tcp from any",
		"firewall.rule:allow 2222/tcp from any",
		"firewall.rule:allow 8443/tcp from any",
		"firewall.rule:deny 3306/tcp from any",
		"firewall.rule:deny 8080/tcp from any",
		"firewall.policy:default",
		"firewall.enable:ufw",
	}
	if got := ids(steps); !slices.Equal(got, want) {
		t.Fatalf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range steps {
		if s.Since() != Since || !strings.HasPrefix(s.Kind(), KindPrefix) || s.ID() != s.Kind()+":"+s.Target() {
			t.Errorf("%s: kind %s since %s", s.ID(), s.Kind(), s.Since())
		}
	}
	if d := steps[len(steps)-1].Describe(); !strings.Contains(d, "ufw --force enable") || !strings.Contains(d, "[22 2222]") {
		t.Errorf("enable describes itself as %q", d)
	}
}

func TestStepsDisabledAndBadInput(t *testing.T) {
	env := cannedEnv(t, "", "", nil, false)
	cfg := defaultFirewall()
	cfg.Enable = false
	if steps, err := Steps(cfg, "oscar", env, Since); steps != nil || err != nil {
		t.Fatalf("disabled: %v, %v", steps, err)
	}
	if _, err := Steps(defaultFirewall(), "gnuhealth", env, Since); err == nil || !strings.Contains(err.Error(), "profile") {
		t.Fatalf("bad profile: %v", err)
	}
	cfg = defaultFirewall()
	cfg.AllowFrom = []string{"10.0.0.0/33"}
	if _, err := Steps(cfg, "oscar", env, Since); err == nil || !strings.Contains(err.Error(), "firewall.allow_from[0]") {
		t.Fatalf("bad cidr: %v", err)
	}
	// Bad configuration is reported even in a chroot.
	if _, err := Steps(cfg, "oscar", cannedEnv(t, "", "", nil, true), Since); err == nil {
		t.Fatal("bad cidr accepted in a chroot")
	}
}

func TestStepsOpenEMRDefaultPort(t *testing.T) {
	env := cannedEnv(t, "", "", nil, false)
	cfg := defaultFirewall()
	cfg.HTTPSPort = config.P(0)
	steps, err := Steps(cfg, "openemr", env, Since)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids(steps), "firewall.rule:allow 443/tcp from any") {
		t.Fatalf("openemr steps: %v", ids(steps))
	}
}

func TestStepsChroot(t *testing.T) {
	env := cannedEnv(t, "", "", nil, true)
	steps, err := Steps(defaultFirewall(), "oscar", env, Since)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || steps[0].ID() != "firewall.enable:ufw" {
		t.Fatalf("chroot steps: %v", ids(steps))
	}
	_, err = steps[0].Check(context.Background())
	d, ok := step.IsDeferred(err)
	if !ok || !strings.Contains(d.Reason, "chroot") || !strings.Contains(d.Reason, ChrootOverride+"=1") {
		t.Fatalf("chroot check: %v", err)
	}
	// Undo of a change that runs ufw refuses in a chroot: the entry stays for a safe undo.
	e := ruleEntry(t, rule(Allow, 22, Any))
	if _, _, err := Undoers(env)[KindRule].Undo(context.Background(), e); err == nil || !strings.Contains(err.Error(), "chroot") {
		t.Fatalf("undo in chroot: %v", err)
	}
	// The override is what a test with its own network namespace sets.
	env = cannedEnv(t, "", "", map[string]string{ChrootOverride: "1"}, true)
	if steps, err := Steps(defaultFirewall(), "oscar", env, Since); err != nil || len(steps) < 5 {
		t.Fatalf("override: %v, %v", ids(steps), err)
	}
}

func TestStepsRemoteSSHUnknown(t *testing.T) {
	// The process tree says this runs under sshd, but nothing names the port.
	root := fakeProc(t, map[int][3]string{
		os.Getpid(): {"emrkit", "100", "PATH=/usr/bin\x00"},
		100:         {"sshd", "1", ""},
	})
	env := cannedEnv(t, "", "", nil, false)
	env.ProcRoot = root
	steps, err := Steps(defaultFirewall(), "oscar", env, Since)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := steps[0].Check(context.Background()); !errors.Is(err, ErrSSHPortUnknown) {
		t.Fatalf("preflight: %v", err)
	}
	last := steps[len(steps)-1]
	if err := last.Apply(context.Background(), json.RawMessage(`{"enabled":true}`)); !errors.Is(err, ErrSSHPortUnknown) {
		t.Fatalf("enable: %v", err)
	}
	for _, s := range steps {
		if strings.Contains(s.ID(), "allow 22/") {
			t.Errorf("a port was guessed: %s", s.ID())
		}
	}
	// With the session's SSH_CONNECTION found in the tree, the port is known.
	root = fakeProc(t, map[int][3]string{
		os.Getpid(): {"emrkit", "100", "SSH_CONNECTION=192.0.2.10 51000 192.0.2.1 2222\x00"},
		100:         {"sshd", "1", ""},
	})
	env.ProcRoot = root
	steps, err = Steps(defaultFirewall(), "oscar", env, Since)
	if err != nil || !slices.Contains(ids(steps), "firewall.rule:allow 2222/tcp from any") {
		t.Fatalf("with SSH_CONNECTION: %v, %v", ids(steps), err)
	}
}

func ruleEntry(t *testing.T, r Rule) journal.Entry {
	t.Helper()
	d, b, err := marshalPair(r, ruleBefore{})
	if err != nil {
		t.Fatal(err)
	}
	return journal.Entry{ID: KindRule + ":" + r.Target(), Kind: KindRule, Target: r.Target(), State: journal.Done, Desired: d, Before: b}
}

// profileEntry applies the profile step the way the runner does and returns its entry.
func profileEntry(t *testing.T, s profileStep) journal.Entry {
	t.Helper()
	ctx := context.Background()
	d, b, err := s.Capture(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	return journal.Entry{ID: s.ID(), Kind: s.Kind(), Target: s.Target(), State: journal.Done, Desired: d, Before: b}
}

func TestProfileStep(t *testing.T) {
	ctx := context.Background()
	env := cannedEnv(t, "", "", nil, false)
	name, content, err := AppProfile("oscar", 8443)
	if err != nil {
		t.Fatal(err)
	}
	if name != "emrkit-oscar" || !strings.Contains(string(content), "[emrkit-oscar]\n") || !strings.Contains(string(content), "ports=8443/tcp\n") {
		t.Fatalf("profile %s:\n%s", name, content)
	}
	s := profileStep{env: env, name: name, content: content, since: Since}
	u := Undoers(env)[KindProfile]
	path := env.ProfilePath()

	// Absent before: apply writes it 0644, undo removes it, a second undo finds nothing to do.
	e := profileEntry(t, s)
	if ok, _ := s.Check(ctx); !ok {
		t.Fatal("not in sync after apply")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("profile file: %v %v", st, err)
	}
	if holds, _ := u.Holds(ctx, e); !holds {
		t.Fatal("Holds = false")
	}
	if o, _, err := u.Undo(ctx, e); err != nil || o != step.Restored {
		t.Fatalf("undo: %v %v", o, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("profile still there: %v", err)
	}
	if o, _, _ := u.Undo(ctx, e); o != step.AlreadyBefore {
		t.Fatalf("second undo: %v", o)
	}

	// Edited since: kept.
	e = profileEntry(t, s)
	os.WriteFile(path, []byte("[mine]\ntitle=x\ndescription=y\nports=1/tcp\n"), 0o644)
	if o, detail, _ := u.Undo(ctx, e); o != step.Kept || !strings.Contains(detail, "edited") {
		t.Fatalf("edited: %v %q", o, detail)
	}

	// Present before: undo restores the admin's content and mode.
	os.Remove(path)
	os.WriteFile(path, []byte("[old]\n"), 0o600)
	e = profileEntry(t, s)
	if o, _, err := u.Undo(ctx, e); err != nil || o != step.Restored {
		t.Fatalf("restore: %v %v", o, err)
	}
	data, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(data) != "[old]\n" || st.Mode().Perm() != 0o600 {
		t.Fatalf("restored %q %v", data, st.Mode())
	}
	cmds, err := UndoCommands(e)
	if err != nil || len(cmds) != 1 || !strings.HasPrefix(cmds[0], "restore") {
		t.Fatalf("UndoCommands: %v %v", cmds, err)
	}
}

func TestUndoCommands(t *testing.T) {
	cmds, err := UndoCommands(ruleEntry(t, rule(Deny, 3306, Any)))
	if err != nil || !slices.Equal(cmds, []string{"ufw delete deny proto tcp from any to any port 3306 comment 'emrkit'"}) {
		t.Fatalf("rule: %v %v", cmds, err)
	}
	pol := journal.Entry{ID: "firewall.policy:default", Kind: KindPolicy,
		Desired: json.RawMessage(`{"incoming":"deny","outgoing":"allow"}`), Before: json.RawMessage(`{"incoming":"allow","outgoing":"allow"}`)}
	if cmds, err := UndoCommands(pol); err != nil || !slices.Equal(cmds, []string{"ufw default allow incoming"}) {
		t.Fatalf("policy: %v %v", cmds, err)
	}
	en := journal.Entry{ID: "firewall.enable:ufw", Kind: KindEnable, Before: json.RawMessage(`{"enabled":false}`)}
	if cmds, err := UndoCommands(en); err != nil || !slices.Equal(cmds, []string{"ufw disable"}) {
		t.Fatalf("enable: %v %v", cmds, err)
	}
	en.Before = json.RawMessage(`{"enabled":true}`)
	if cmds, err := UndoCommands(en); err != nil || cmds != nil {
		t.Fatalf("enable, was on: %v %v", cmds, err)
	}
}

func TestUndoRejectsTamperedEntry(t *testing.T) {
	env := cannedEnv(t, "", "", nil, false)
	e := ruleEntry(t, rule(Allow, 22, Any))
	e.Desired = json.RawMessage(`{"action":"allow","port":22,"proto":"tcp","from":"any","comment":"admin"}`)
	if _, _, err := Undoers(env)[KindRule].Undo(context.Background(), e); err == nil {
		t.Fatal("an entry without the emrkit comment was undone")
	}
}

func TestUFWErrors(t *testing.T) {
	ctx := context.Background()
	_, err := UFW{Path: "/nonexistent/ufw"}.Run(ctx, "status")
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt install ufw") {
		t.Fatalf("missing ufw: %v", err)
	}
	var gotArgv, gotEnv []string
	u := UFW{Path: "/usr/sbin/ufw", Exec: func(_ context.Context, argv, env []string) ([]byte, []byte, error) {
		gotArgv, gotEnv = argv, env
		return nil, []byte("ERROR: Couldn't determine iptables version\n"), errors.New("exit status 1")
	}}
	_, err = u.Run(ctx, "status")
	if err == nil || !strings.Contains(err.Error(), "Couldn't determine iptables version") || !strings.Contains(err.Error(), "iptables is not usable") {
		t.Fatalf("iptables failure: %v", err)
	}
	if !slices.Equal(gotArgv, []string{"/usr/sbin/ufw", "status"}) || !slices.Contains(gotEnv, "LC_ALL=C") {
		t.Fatalf("argv %q env %q", gotArgv, gotEnv)
	}
}

func TestRootDetector(t *testing.T) {
	const initInfo = "22 27 0:21 / /proc rw - proc proc rw\n27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
	for name, c := range map[string]struct {
		root     string // where proc/1/root points: "/" , "dir", or "loop" (cannot be followed)
		selfInfo string
		chroot   bool
	}{
		"same root":                            {root: "/", chroot: false},
		"another root (debootstrap, piuparts)": {root: "dir", chroot: true},
		// A new mount namespace renumbers every mount (47, not 27): ischroot took that for a chroot.
		"private mount namespace, pid 1 unreadable":  {root: "loop", selfInfo: "47 46 254:0 / / rw,relatime - ext4 /dev/vda rw\n", chroot: false},
		"chroot into a directory, pid 1 unreadable":  {root: "loop", selfInfo: "50 49 0:21 / /proc rw - proc proc rw\n", chroot: true},
		"chroot into a bind mount, pid 1 unreadable": {root: "loop", selfInfo: "46 27 254:0 /srv/cr / rw - ext4 /dev/vda rw\n", chroot: true},
	} {
		t.Run(name, func(t *testing.T) {
			proc := t.TempDir()
			for _, d := range []string{"1", "self"} {
				os.MkdirAll(filepath.Join(proc, d), 0o755)
			}
			os.WriteFile(filepath.Join(proc, "1", "mountinfo"), []byte(initInfo), 0o644)
			os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(c.selfInfo), 0o644)
			target := map[string]string{"/": "/", "dir": t.TempDir(), "loop": "root"}[c.root]
			if err := os.Symlink(target, filepath.Join(proc, "1", "root")); err != nil {
				t.Fatal(err)
			}
			got, err := RootDetector(proc)(context.Background())
			if err != nil || got != c.chroot {
				t.Fatalf("chroot %v, %v; want %v", got, err, c.chroot)
			}
		})
	}
	// No /proc: cannot tell, which the guard treats as a chroot.
	if _, err := RootDetector(filepath.Join(t.TempDir(), "missing"))(context.Background()); err == nil || !strings.Contains(err.Error(), "not mounted") {
		t.Fatalf("no /proc: %v", err)
	}
}
