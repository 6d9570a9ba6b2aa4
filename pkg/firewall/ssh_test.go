package firewall

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sshd -T outputs were captured from Debian 12's OpenSSH 9.2 sshd; ss outputs from iproute2
// 6.1 with a real sshd (Port 22, Port 2222, and 127.0.0.1:2299) next to nc listeners.

func TestSSHDPorts(t *testing.T) {
	for file, want := range map[string][]int{
		"sshd-T-default.txt":       {22},
		"sshd-T-two-ports.txt":     {22, 2222},
		"sshd-T-listenaddress.txt": {2200}, // [::1]:2201 is loopback only
	} {
		if got := SSHDPorts(readTestdata(t, file)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", file, got, want)
		}
	}
	if got := SSHDPorts(""); got != nil {
		t.Errorf("empty: %v", got)
	}
}

func TestSSHListeners(t *testing.T) {
	for _, file := range []string{"ss-Hltnp.txt", "ss-ltnp-header.txt"} {
		if got := SSHListeners(readTestdata(t, file)); !slices.Equal(got, []int{22, 2222}) {
			t.Errorf("%s: %v, want [22 2222] (nc ignored, loopback 2299 skipped)", file, got)
		}
	}
	dropbear := `LISTEN 0 20 0.0.0.0:2022 0.0.0.0:* users:(("dropbear",pid=9,fd=4))`
	if got := SSHListeners(dropbear); !slices.Equal(got, []int{2022}) {
		t.Errorf("dropbear: %v", got)
	}
	fake := `LISTEN 0 1 0.0.0.0:2023 0.0.0.0:* users:(("notsshd",pid=9,fd=4))`
	if got := SSHListeners(fake); got != nil {
		t.Errorf("notsshd: %v", got)
	}
}

func TestConnectionPort(t *testing.T) {
	for in, want := range map[string]int{
		"10.213.1.2 50022 10.213.1.1 22": 22,
		"fe80::1 40000 fe80::2 2222":     2222,
		"10.0.0.1 1 10.0.0.2 99999":      0,
		"garbage":                        0,
		"":                               0,
	} {
		got, ok := ConnectionPort(in)
		if got != want || ok != (want != 0) {
			t.Errorf("ConnectionPort(%q) = %d, %v", in, got, ok)
		}
	}
}

func TestDetectSSH(t *testing.T) {
	two := readTestdata(t, "sshd-T-two-ports.txt")
	ss := readTestdata(t, "ss-Hltnp.txt")
	tests := []struct {
		name   string
		in     SSHInputs
		ports  []int
		remote bool
		err    error
	}{
		{"console, no sshd", SSHInputs{}, nil, false, nil},
		{"sshd -T", SSHInputs{SSHDConfig: two}, []int{22, 2222}, false, nil},
		{"ss only (sshd -T failed)", SSHInputs{Listening: ss}, []int{22, 2222}, false, nil},
		{"session port added", SSHInputs{SSHDConfig: readTestdata(t, "sshd-T-listenaddress.txt"), Connection: "10.0.0.9 5000 10.0.0.1 22"}, []int{22, 2200}, true, nil},
		{"configured wins over detection", SSHInputs{Configured: 2222, SSHDConfig: two, Listening: ss}, []int{2222}, false, nil},
		{"configured plus session", SSHInputs{Configured: 2222, Connection: "10.0.0.9 5000 10.0.0.1 22"}, []int{22, 2222}, true, nil},
		{"remote, unknown", SSHInputs{UnderSSHD: true}, nil, true, ErrSSHPortUnknown},
		{"remote via ss", SSHInputs{UnderSSHD: true, Listening: ss}, []int{22, 2222}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DetectSSH(tc.in)
			if !errors.Is(err, tc.err) || !slices.Equal(d.Ports, tc.ports) || d.Remote != tc.remote {
				t.Fatalf("got %v remote=%v err=%v; want %v remote=%v err=%v", d.Ports, d.Remote, err, tc.ports, tc.remote, tc.err)
			}
		})
	}
	if !strings.Contains(ErrSSHPortUnknown.Error(), "emrkit/ssh-port") {
		t.Error("the refusal must name emrkit/ssh-port")
	}
}

// fakeProc writes a /proc-like tree: pid -> (comm, ppid, environ).
func fakeProc(t *testing.T, procs map[int][3]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (" + p[0] + ") S " + p[1] + " 1 1 0 -1\n"
		for name, content := range map[string]string{"comm": p[0] + "\n", "stat": stat, "environ": p[2]} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestSessionFromAncestors(t *testing.T) {
	// emrkit under dpkg under sudo: sudo dropped SSH_CONNECTION, the login shell has it.
	root := fakeProc(t, map[int][3]string{
		400: {"emrkit", "300", "PATH=/usr/bin\x00"},
		300: {"dpkg", "200", "PATH=/usr/bin\x00"},
		200: {"bash", "150", "HOME=/root\x00SSH_CONNECTION=192.0.2.10 51000 192.0.2.1 2222\x00"},
		150: {"sshd-session", "100", ""},
		100: {"sshd", "1", ""},
	})
	under, conn := sessionFromAncestors(root, 400)
	if !under || conn != "192.0.2.10 51000 192.0.2.1 2222" {
		t.Fatalf("under=%v conn=%q", under, conn)
	}
	// Remote without SSH_CONNECTION anywhere: remote, port unknown.
	root = fakeProc(t, map[int][3]string{
		400: {"emrkit", "300", ""},
		300: {"su (x) y", "100", ""},
		100: {"sshd", "1", ""},
	})
	under, conn = sessionFromAncestors(root, 400)
	if !under || conn != "" {
		t.Fatalf("under=%v conn=%q", under, conn)
	}
	// Console: no sshd up to init.
	root = fakeProc(t, map[int][3]string{400: {"emrkit", "300", ""}, 300: {"login", "1", ""}})
	if under, conn := sessionFromAncestors(root, 400); under || conn != "" {
		t.Fatalf("console: under=%v conn=%q", under, conn)
	}
}

func TestParentPID(t *testing.T) {
	for stat, want := range map[string]int{
		"42 (bash) S 7 42 42 0": 7,
		"42 (a) b (c)) R 9 1 1": 9,
		"garbage":               0,
	} {
		got, ok := parentPID(stat)
		if got != want || ok != (want != 0) {
			t.Errorf("parentPID(%q) = %d, %v", stat, got, ok)
		}
	}
}
