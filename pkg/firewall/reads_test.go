package firewall

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readsLab is a host whose ufw and iptables are counted stand-ins: the decisions of the read
// cache are pure; the real ufw behind it is exercised in the namespace test.
type readsLab struct {
	env      Env
	ufwCalls []string
	kernel   string // what iptables -S prints
	status   string
}

func newReadsLab(t *testing.T) *readsLab {
	t.Helper()
	dir := t.TempDir()
	l := &readsLab{kernel: "-P INPUT DROP\n-N ufw-user-input\n", status: "Status: active\n"}
	for name, content := range map[string]string{
		"ufw": "#!/usr/bin/python3\n", "default-ufw": "IPV6=yes\n", "ufw.conf": "ENABLED=yes\n",
		"user.rules": "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=656d726b6974\n", "user6.rules": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "modules"), 0o755)
	l.env = Env{
		UFW: UFW{Path: filepath.Join(dir, "ufw"), Exec: func(_ context.Context, argv, _ []string) ([]byte, []byte, error) {
			cmd := strings.Join(argv[1:], " ")
			l.ufwCalls = append(l.ufwCalls, cmd)
			switch cmd {
			case "status":
				return []byte(l.status), nil, nil
			case "show added":
				return []byte("Added user rules (see 'ufw status' for running firewall):\nufw allow 22/tcp comment 'emrkit'\n"), nil, nil
			}
			return nil, nil, nil
		}},
		Exec: func(_ context.Context, argv, _ []string) ([]byte, []byte, error) {
			return []byte(l.kernel), nil, nil
		},
		DefaultsFile: filepath.Join(dir, "default-ufw"),
		UserRules:    []string{filepath.Join(dir, "user.rules"), filepath.Join(dir, "user6.rules")},
		IPTables:     []string{"iptables", "ip6tables"},
		UFWModules:   filepath.Join(dir, "modules"),
	}
	return l
}

// run is one emrkit run: a fresh Env keeping its reads in file, asking what the steps ask.
func (l *readsLab) run(t *testing.T, file string) string {
	t.Helper()
	e := l.env.KeepReads(file)
	ctx := context.Background()
	var out []string
	for _, args := range [][]string{{"status"}, {"show", "added"}, {"status"}, {"show", "added"}} {
		o, err := e.UFW.Run(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return strings.Join(out, "|")
}

func (l *readsLab) calls() int {
	n := len(l.ufwCalls)
	l.ufwCalls = nil
	return n
}

func TestKeptReadsSkipUFWOnlyWhileItsSourcesAreUnchanged(t *testing.T) {
	l := newReadsLab(t)
	file := filepath.Join(t.TempDir(), "state", ReadsFile)
	first := l.run(t, file)
	if n := l.calls(); n != 2 {
		t.Fatalf("first run started ufw %d times, want 2 (each read once)", n)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept reads: %v %v", fi, err)
	}
	if again := l.run(t, file); again != first || l.calls() != 0 {
		t.Fatalf("a run over unchanged sources started ufw (or answered differently: %q)", again)
	}

	// Each source, changed, makes ufw be asked again — and a run that only reads keeps the new answers.
	for name, change := range map[string]func(){
		"an admin's rule":          func() { appendTo(t, l.env.UserRules[0], "### tuple ### allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in\n") },
		"ufw disabled in ufw.conf": func() { writeTo(t, filepath.Join(filepath.Dir(l.env.UserRules[0]), "ufw.conf"), "ENABLED=no\n") },
		"a flushed kernel table":   func() { l.kernel = "-P INPUT ACCEPT\n"; l.status = "Status: inactive\n" },
		"the default policies":     func() { appendTo(t, l.env.DefaultsFile, "DEFAULT_INPUT_POLICY=\"ACCEPT\"\n") },
		"an upgraded ufw":          func() { appendTo(t, l.env.UFW.Path, "# 0.36.3\n") },
	} {
		change()
		got := l.run(t, file)
		if n := l.calls(); n != 2 {
			t.Fatalf("%s: ufw started %d times, want 2", name, n)
		}
		if name == "a flushed kernel table" && !strings.HasPrefix(got, "Status: inactive") {
			t.Fatalf("%s: status %q", name, got)
		}
		if l.run(t, file); l.calls() != 0 {
			t.Fatalf("%s: the run after it started ufw again", name)
		}
	}

	// Any other ufw command forgets the run's answers; a damaged file is as good as none.
	e := l.env.KeepReads(file)
	ctx := context.Background()
	e.UFW.Run(ctx, "status")
	e.UFW.Run(ctx, "allow", "22/tcp")
	l.calls()
	l.kernel += "-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n"
	if e.UFW.Run(ctx, "status"); l.calls() != 1 {
		t.Fatal("status after a change was answered from the cache")
	}
	writeTo(t, file, "{not json")
	if l.run(t, file); l.calls() != 2 {
		t.Fatal("a damaged file was trusted")
	}
	// Sources that cannot be read keep nothing: ufw is asked every run.
	l.env.IPTables = nil
	l.run(t, file)
	l.run(t, file)
	if n := l.calls(); n != 4 {
		t.Fatalf("without a fingerprint ufw started %d times over two runs, want 4", n)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(s)
}

func writeTo(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
