package offsite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/sftptest"
	"github.com/emrkit/emrkit/pkg/offsite"
)

// This package's tests run in a network namespace of their own with loopback only (TestMain
// re-executes the test binary under unshare), where a real sshd serves SFTP on 127.0.0.1:2222
// as the offsite host. A private mount namespace gives sshd its /run/sshd without touching the
// host's /run.

const (
	labEnv  = "EMRKIT_OFFSITE_LAB"
	sshPort = 2222
)

func TestMain(m *testing.M) {
	if os.Getenv(labEnv) == "" {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "pkg/offsite: the SFTP lab needs root (a network namespace and sshd); run the tests as root")
			os.Exit(1)
		}
		setup := `set -e; ip link set lo up; mount -t tmpfs -o mode=0755 lab /run; mkdir -m 0755 /run/sshd; exec "$@"`
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, "pkg/offsite:", err)
			os.Exit(1)
		}
		cmd := exec.Command("unshare", append([]string{"--net", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", self}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), labEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Run(); err != nil {
			if x, ok := errors.AsType[*exec.ExitError](err); ok {
				os.Exit(x.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "pkg/offsite: start the lab namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lab is the offsite host (internal/sftptest, its sshd run here) and the clinic's side of
// it: restic wrapped to record the argv and environment every run gets.
type lab struct {
	t                       *testing.T
	host                    *sftptest.Host
	dir, knownHosts         string
	resticLog, passwordFile string
	wrapper                 string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if _, err := exec.LookPath("restic"); err != nil {
		t.Fatal("the offsite lab needs restic (scripts/deps.sh installs it)")
	}
	h := sftptest.New(t, sshPort)
	dir := t.TempDir()
	l := &lab{t: t, host: h, dir: dir, knownHosts: filepath.Join(dir, "known_hosts"),
		resticLog: filepath.Join(dir, "restic.log"), passwordFile: filepath.Join(dir, "offsite.password"), wrapper: filepath.Join(dir, "restic")}
	must(t, os.WriteFile(l.knownHosts, []byte(h.KnownHost), 0o644))
	// The wrapper records what restic is started with, then is restic.
	must(t, os.WriteFile(l.wrapper, []byte("#!/bin/sh\n{ printf 'argv:'; printf ' %s' \"$@\"; printf '\\n'; env; } >>"+l.resticLog+"\nexec restic \"$@\"\n"), 0o755))
	// -E, not -e: SFTP sessions outlive the listener and would hold a stderr pipe open.
	sshd := exec.Command(sftptest.Sshd, "-D", "-E", filepath.Join(dir, "sshd.log"), "-f", h.Config)
	sshd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, sshd.Start())
	t.Cleanup(func() {
		sshd.Process.Kill()
		sshd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", log)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", sshPort), time.Second)
		if err == nil {
			c.Close()
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab's sshd does not answer: %v", err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// repo is the repository at path on the offsite host, reached over SFTP.
func (l *lab) repo(path string) offsite.Repo {
	return offsite.Repo{Repository: fmt.Sprintf("sftp://root@127.0.0.1:%d/%s", sshPort, path), PasswordFile: l.passwordFile,
		SSHKey: l.host.ClientKey, KnownHosts: l.knownHosts, Restic: l.wrapper}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestOverSFTP creates a repository on the offsite host, copies two backups in, applies the
// retention, fetches the newest back byte for byte, checks the repository (and finds the
// damage done to it on the host), and never gives restic the password but as a file.
func TestOverSFTP(t *testing.T) {
	l := newLab(t)
	vault := filepath.Join(l.host.Dir, "vault")
	r := l.repo(vault)

	if _, err := r.Snapshots(ctx(t)); err == nil || !strings.Contains(err.Error(), "run emrkit backup offsite init") {
		t.Fatalf("snapshots without a password file: %v", err)
	}
	created, err := r.Init(ctx(t))
	if err != nil || !created {
		t.Fatalf("init: %v %v", created, err)
	}
	if _, err := os.Stat(filepath.Join(vault, "config")); err != nil {
		t.Fatalf("no repository on the offsite host: %v", err)
	}
	if created, err := r.Init(ctx(t)); err != nil || created {
		t.Fatalf("second init: %v %v", created, err)
	}
	password, err := os.ReadFile(l.passwordFile)
	must(t, err)

	backups := t.TempDir()
	var files [][]byte
	for i, name := range []string{"oscar_15-backup-20261205T021700Z.sql.gz.pgp", "oscar_15-backup-20261206T021700Z.sql.gz.pgp"} {
		data := bytes.Repeat([]byte(fmt.Sprintf("backup %d ", i)), 300000)
		must(t, os.WriteFile(filepath.Join(backups, name), data, 0o600))
		s, err := r.Copy(ctx(t), filepath.Join(backups, name))
		if err != nil {
			t.Fatalf("copy %s: %v", name, err)
		}
		if f, _ := s.File(); f != filepath.Join(backups, name) {
			t.Fatalf("snapshot %s holds %v", s.ShortID, s.Paths)
		}
		files = append(files, data)
	}
	all, err := r.Snapshots(ctx(t))
	if err != nil || len(all) != 2 {
		t.Fatalf("snapshots: %v %v", all, err)
	}
	// Both copies are of the same day: keep.daily 1 keeps the newer.
	must(t, r.Forget(ctx(t), offsite.Keep{Daily: 1}))
	all, err = r.Snapshots(ctx(t))
	if err != nil || len(all) != 1 || !strings.HasSuffix(all[0].Paths[0], "20261206T021700Z.sql.gz.pgp") {
		t.Fatalf("after forget: %v %v", all, err)
	}
	newest, err := r.Find(ctx(t), "latest")
	must(t, err)
	if byID, err := r.Find(ctx(t), newest.ShortID); err != nil || byID.ID != newest.ID {
		t.Fatalf("find %s: %v %v", newest.ShortID, byID, err)
	}
	got, err := r.Fetch(ctx(t), newest, t.TempDir())
	must(t, err)
	if data, _ := os.ReadFile(got); !bytes.Equal(data, files[1]) {
		t.Fatalf("the fetched %s differs from the backup copied", got)
	}
	must(t, r.Verify(ctx(t), "100%"))

	// Damage on the offsite host (a disk going bad): every data file has one byte flipped.
	packs, _ := filepath.Glob(filepath.Join(vault, "data", "*", "*"))
	for _, p := range packs {
		data, err := os.ReadFile(p)
		must(t, err)
		data[len(data)/2] ^= 0xff
		os.Chmod(p, 0o600)
		must(t, os.WriteFile(p, data, 0o600))
	}
	if err := r.Verify(ctx(t), "100%"); err == nil {
		t.Fatal("restic check read a damaged repository back as sound")
	}

	log, err := os.ReadFile(l.resticLog)
	must(t, err)
	pw := strings.TrimSpace(string(password))
	if len(pw) < 20 || bytes.Contains(log, []byte(pw)) {
		t.Fatalf("the repository password reached restic's argv or environment (or is empty):\n%s", log)
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.HasPrefix(line, "RESTIC_PASSWORD=") || strings.HasPrefix(line, "RESTIC_PASSWORD_COMMAND=") {
			t.Fatalf("restic was given %s", line)
		}
	}
	if !bytes.Contains(log, []byte("RESTIC_PASSWORD_FILE="+l.passwordFile)) || !bytes.Contains(log, []byte("BatchMode=yes")) {
		t.Fatalf("restic ran without the password file or without BatchMode:\n%s", log)
	}
}

// TestSFTPFailuresSayWhy: a host key not in known_hosts, a wrong password and a host that is
// not there each fail with restic's reason, promptly, and never wait for an answer.
func TestSFTPFailuresSayWhy(t *testing.T) {
	l := newLab(t)
	vault := filepath.Join(l.host.Dir, "vault")
	r := l.repo(vault)
	if _, err := r.Init(ctx(t)); err != nil {
		t.Fatal(err)
	}

	stranger := r
	stranger.KnownHosts = filepath.Join(l.dir, "empty_known_hosts")
	must(t, os.WriteFile(stranger.KnownHosts, nil, 0o644))
	start := time.Now()
	if _, err := stranger.Snapshots(ctx(t)); err == nil || time.Since(start) > time.Minute {
		t.Fatalf("an unknown host key: %v after %s", err, time.Since(start))
	}

	wrong := r
	wrong.PasswordFile = filepath.Join(l.dir, "wrong.password")
	must(t, os.WriteFile(wrong.PasswordFile, []byte("not-the-password\n"), 0o600))
	if _, err := wrong.Snapshots(ctx(t)); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("a wrong password: %v", err)
	}

	loose := r
	loose.PasswordFile = filepath.Join(l.dir, "loose.password")
	must(t, os.WriteFile(loose.PasswordFile, []byte("x\n"), 0o644))
	if _, err := loose.Snapshots(ctx(t)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a password file others read: %v", err)
	}

	gone := l.repo(filepath.Join(l.host.Dir, "never-made"))
	if _, err := gone.Snapshots(ctx(t)); !errors.Is(err, offsite.ErrNoRepository) {
		t.Fatalf("no repository there: %v", err)
	}
}

func TestRepositoryStrings(t *testing.T) {
	good := []string{"sftp:backup@vault.example.org:/srv/restic", "sftp:vault:clinic", "sftp://backup@vault.example.org:2200//srv/restic", "/mnt/usb/restic"}
	for _, g := range good {
		if err := (offsite.Repo{Repository: g, PasswordFile: "/etc/emrkit/offsite.password"}).Check(); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	for repo, want := range map[string]string{
		"s3:s3.amazonaws.com/bucket":          "only SFTP and local",
		"sftp:host":                           "no host or no path",
		"sftp://u:secret@host//x":             "a password in the URL",
		"sftp://host:99999//x":                "port must be 1-65535",
		"sftp:host:/a b":                      "blanks and quotes",
		"relative/dir":                        "only SFTP and local",
		"sftp:host:/x' -o ProxyCommand=evil'": "blanks and quotes",
	} {
		err := (offsite.Repo{Repository: repo, PasswordFile: "/etc/emrkit/offsite.password"}).Check()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", repo, err, want)
		}
	}
	if err := (offsite.Repo{Repository: "/mnt/x", PasswordFile: "/p", SSHKey: "/root/my key"}).Check(); err == nil {
		t.Error("an ssh_key path with a blank was taken")
	}
}

// TestFindBySnapshotID: a snapshot is found by any unique prefix of its ID; a prefix that 17
// snapshots must share (there are 16 hex digits) is refused as ambiguous, naming how many it
// matches; an ID of none is ErrNoSnapshot.
func TestFindBySnapshotID(t *testing.T) {
	dir := t.TempDir()
	r := offsite.Repo{Repository: filepath.Join(dir, "repo"), PasswordFile: filepath.Join(dir, "offsite.password")}
	if _, err := r.Init(ctx(t)); err != nil {
		t.Fatal(err)
	}
	byFirst := map[byte][]offsite.Snapshot{}
	for i := range 17 {
		file := filepath.Join(dir, fmt.Sprintf("oscar_15-backup-20261207T0217%02dZ.sql.gz", i))
		must(t, os.WriteFile(file, []byte(fmt.Sprintf("backup %d\n", i)), 0o600))
		s, err := r.Copy(ctx(t), file)
		if err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		byFirst[s.ID[0]] = append(byFirst[s.ID[0]], s)
	}
	for first, shared := range byFirst {
		for _, s := range shared {
			if got, err := r.Find(ctx(t), s.ShortID); err != nil || got.ID != s.ID {
				t.Errorf("find %s: %v %v", s.ShortID, got.ID, err)
			}
		}
		if len(shared) < 2 {
			continue
		}
		_, err := r.Find(ctx(t), string(first))
		if want := fmt.Sprintf("snapshot ID %c is ambiguous (%d snapshots); give more of it", first, len(shared)); err == nil || err.Error() != want {
			t.Errorf("find %c: %v, want %q", first, err, want)
		}
	}
	if _, err := r.Find(ctx(t), "zz"); !errors.Is(err, offsite.ErrNoSnapshot) {
		t.Errorf("find of no snapshot: %v", err)
	}
}
