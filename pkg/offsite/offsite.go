// Package offsite owns the copies of emrkit's backups kept off the server, in a restic
// repository (Debian's restic: encrypted, deduplicated and checkable): copying a backup in,
// retention (restic forget --prune), the repository check and its record for doctor, listing
// the snapshots and fetching one back.
//
// restic is given the repository password only as a file (RESTIC_PASSWORD_FILE), never on
// argv or in the environment, and nothing else of the caller's environment. Over SFTP its ssh
// never asks: BatchMode, a host key that must already be known, and a connect timeout, so a
// nightly run fails and says why instead of hanging on a prompt.
package offsite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/redact"
	"github.com/emrkit/emrkit/pkg/secretfile"
)

// Tag marks the snapshots emrkit made; it lists, forgets and restores only those, so a
// repository shared with other restic jobs keeps theirs.
const Tag = "emrkit"

// Repo is one restic repository and how to reach it.
type Repo struct {
	// Repository is restic's: "sftp:user@host:/path", "sftp://user@host:port//path", or an
	// absolute path (a mounted disk).
	Repository string
	// PasswordFile holds the repository password (first line), mode 0600.
	PasswordFile string
	// SSHKey and KnownHosts are ssh's identity and known-hosts files; "" leaves ssh's
	// defaults (root's ~/.ssh).
	SSHKey, KnownHosts string
	// Restic is the program; "" means "restic" on the fixed PATH.
	Restic string
	// Log gets progress of long transfers (nil: none).
	Log io.Writer
}

// Snapshot is one copy in the repository (restic snapshots --json).
type Snapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname"`
	Paths    []string  `json:"paths"`
	Tags     []string  `json:"tags"`
}

// File is the backup file the snapshot holds (emrkit's snapshots hold exactly one).
func (s Snapshot) File() (string, error) {
	if len(s.Paths) != 1 {
		return "", fmt.Errorf("snapshot %s holds %d paths, not one backup file: it is not emrkit's", s.ShortID, len(s.Paths))
	}
	return s.Paths[0], nil
}

// Keep is the retention: how many daily, weekly and monthly snapshots restic forget keeps
// (the newest of each day, week, month). All zero keeps everything.
type Keep struct{ Daily, Weekly, Monthly int }

// ErrNoSnapshot means the repository holds no snapshot of emrkit's (or none with that ID).
var ErrNoSnapshot = errors.New("no such snapshot")

// ErrNoRepository means there is no restic repository at the location yet.
var ErrNoRepository = errors.New("no restic repository there")

// Check validates the repository string and the paths before anything runs.
func (r Repo) Check() error {
	if _, err := r.target(); err != nil {
		return err
	}
	for _, p := range []struct{ what, path string }{{"ssh_key", r.SSHKey}, {"known_hosts", r.KnownHosts}} {
		if p.path == "" {
			continue
		}
		// restic splits sftp.command on blanks; a path that needs quoting would be cut.
		if !filepath.IsAbs(p.path) || strings.ContainsAny(p.path, " \t\n'\"\\") {
			return fmt.Errorf("backup.offsite.%s %q: give an absolute path without blanks or quotes", p.what, p.path)
		}
	}
	if r.PasswordFile == "" || !filepath.IsAbs(r.PasswordFile) {
		return fmt.Errorf("backup.offsite.password_file %q: an absolute path is needed", r.PasswordFile)
	}
	return nil
}

// sshTarget is where an SFTP repository's ssh connects.
type sshTarget struct {
	userHost string // user@host or host
	port     string // "" = ssh's default
}

// target parses the repository: an SFTP target, or nil for a local path.
func (r Repo) target() (*sshTarget, error) {
	repo := r.Repository
	bad := func(why string) error {
		return fmt.Errorf("backup.offsite.repository %q: %s; write sftp:USER@HOST:/PATH, sftp://USER@HOST:PORT//PATH or an absolute path", repo, why)
	}
	if strings.ContainsAny(repo, " \t\n'\"\\") {
		return nil, bad("blanks and quotes are not allowed")
	}
	switch {
	case filepath.IsAbs(repo):
		return nil, nil
	case strings.HasPrefix(repo, "sftp://"):
		u, err := url.Parse(repo)
		if err != nil || u.Host == "" || u.Hostname() == "" {
			return nil, bad("not a URL with a host")
		}
		t := &sshTarget{userHost: u.Hostname(), port: u.Port()}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				return nil, bad("a password in the URL would be on restic's command line; use an ssh key")
			}
			t.userHost = u.User.Username() + "@" + t.userHost
		}
		if t.port != "" {
			if n, err := strconv.Atoi(t.port); err != nil || n < 1 || n > 65535 {
				return nil, bad("the port must be 1-65535")
			}
		}
		return t, nil
	case strings.HasPrefix(repo, "sftp:"):
		host, path, ok := strings.Cut(strings.TrimPrefix(repo, "sftp:"), ":")
		if !ok || host == "" || path == "" {
			return nil, bad("no host or no path")
		}
		return &sshTarget{userHost: host}, nil
	}
	return nil, bad("only SFTP and local repositories are supported")
}

// env is restic's whole environment: the password file, C messages, a fixed PATH, and the
// HOME ssh looks for root's keys in.
func (r Repo) env() []string {
	home := os.Getenv("HOME")
	if home == "" {
		home = "/root"
	}
	return []string{"RESTIC_PASSWORD_FILE=" + r.PasswordFile, "LC_ALL=C", "LANG=C", "TZ=UTC",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home}
}

// args are the options every restic run gets: the repository, no local cache (nothing left
// under root's home), and for SFTP the ssh that never asks.
func (r Repo) args() ([]string, error) {
	t, err := r.target()
	if err != nil {
		return nil, err
	}
	args := []string{"--repo", r.Repository, "--no-cache"}
	if t != nil {
		ssh := []string{"ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20",
			"-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=4"}
		if r.SSHKey != "" {
			ssh = append(ssh, "-o", "IdentitiesOnly=yes", "-i", r.SSHKey)
		}
		if r.KnownHosts != "" {
			ssh = append(ssh, "-o", "UserKnownHostsFile="+r.KnownHosts)
		}
		if t.port != "" {
			ssh = append(ssh, "-p", t.port)
		}
		ssh = append(ssh, t.userHost, "-s", "sftp")
		args = append(args, "--option", "sftp.command="+strings.Join(ssh, " "))
	}
	return args, nil
}

// run runs restic with args after the common ones; stdout is handed to out line by line
// when out is set, else returned.
func (r Repo) run(ctx context.Context, out func(line []byte), args ...string) ([]byte, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	if _, ok, err := secretfile.Read(r.PasswordFile); err != nil {
		return nil, fmt.Errorf("offsite: %w", err)
	} else if !ok {
		return nil, fmt.Errorf("offsite: the repository password file %s is not there; run emrkit backup offsite init (or put the password of an existing repository there, mode 0600)", r.PasswordFile)
	}
	common, err := r.args()
	if err != nil {
		return nil, err
	}
	prog := r.Restic
	if prog == "" {
		prog = "restic"
	}
	cmd := exec.CommandContext(ctx, prog, append(common, args...)...)
	cmd.Env = r.env()
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &limited{w: &stderr, n: 64 << 10}
	if out == nil {
		cmd.Stdout = &limited{w: &stdout, n: 64 << 20}
	} else {
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				out(sc.Bytes())
			}
			io.Copy(io.Discard, pr)
		}()
		defer func() { <-done }()
		defer pw.Close()
	}
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("offsite: %s is not installed; apt install restic", prog)
		}
		if strings.Contains(stderr.String(), "Is there a repository at the following location?") {
			return nil, fmt.Errorf("offsite: %w at %s; run emrkit backup offsite init", ErrNoRepository, r.Repository)
		}
		return nil, fmt.Errorf("restic %s: %w: %s", args[0], err, redact.Line(lastLine(stderr.String())))
	}
	return stdout.Bytes(), nil
}

// limited keeps the first n bytes written and drops the rest, so a chatty restic cannot
// grow emrkit's memory.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// lastLine is the last non-blank line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Init creates the repository, first generating its password file when there is none
// (never rewritten: an existing repository's password is kept). It returns false when a
// repository was there already.
func (r Repo) Init(ctx context.Context) (bool, error) {
	if err := r.Check(); err != nil {
		return false, err
	}
	if _, err := secretfile.Ensure(r.PasswordFile); err != nil {
		return false, fmt.Errorf("offsite: %w", err)
	}
	if _, err := r.run(ctx, nil, "cat", "config"); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNoRepository) {
		return false, err
	}
	if _, err := r.run(ctx, nil, "init"); err != nil {
		return false, err
	}
	return true, nil
}

// Copy puts file (a backup) into the repository as a snapshot of its own and returns it.
func (r Repo) Copy(ctx context.Context, file string) (Snapshot, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return Snapshot{}, err
	}
	var id string
	var shown float64
	_, err = r.run(ctx, func(line []byte) {
		var m struct {
			Type    string  `json:"message_type"`
			Percent float64 `json:"percent_done"`
			ID      string  `json:"snapshot_id"`
		}
		if json.Unmarshal(line, &m) != nil {
			return
		}
		switch m.Type {
		case "summary":
			id = m.ID
		case "status":
			if r.Log != nil && m.Percent >= shown+0.1 && m.Percent < 1 {
				shown = m.Percent
				fmt.Fprintf(r.Log, "offsite: %s: %.0f%% sent\n", filepath.Base(abs), 100*m.Percent)
			}
		}
	}, "backup", "--json", "--tag", Tag, abs)
	if err != nil {
		return Snapshot{}, err
	}
	if id == "" {
		return Snapshot{}, fmt.Errorf("restic backup of %s reported no snapshot", abs)
	}
	return r.Find(ctx, id)
}

// Forget applies the retention to emrkit's snapshots of each host and prunes what no
// snapshot needs any more.
func (r Repo) Forget(ctx context.Context, k Keep) error {
	if k == (Keep{}) {
		return nil
	}
	_, err := r.run(ctx, nil, "forget", "--tag", Tag, "--group-by", "host,tags",
		"--keep-daily", strconv.Itoa(k.Daily), "--keep-weekly", strconv.Itoa(k.Weekly),
		"--keep-monthly", strconv.Itoa(k.Monthly), "--prune")
	return err
}

// Snapshots are emrkit's snapshots, oldest first.
func (r Repo) Snapshots(ctx context.Context) ([]Snapshot, error) {
	out, err := r.run(ctx, nil, "snapshots", "--json", "--tag", Tag)
	if err != nil {
		return nil, err
	}
	var s []Snapshot
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	slices.SortStableFunc(s, func(a, b Snapshot) int { return a.Time.Compare(b.Time) })
	return s, nil
}

// Find is the snapshot with id (a full or short ID), or the newest for "" and "latest".
func (r Repo) Find(ctx context.Context, id string) (Snapshot, error) {
	all, err := r.Snapshots(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	if id == "" || id == "latest" {
		if len(all) == 0 {
			return Snapshot{}, fmt.Errorf("%w: the repository %s holds no copy of emrkit's", ErrNoSnapshot, r.Repository)
		}
		return all[len(all)-1], nil
	}
	var found []Snapshot
	for _, s := range all {
		if strings.HasPrefix(s.ID, id) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return Snapshot{}, fmt.Errorf("%w: %s is not one of emrkit's snapshots in %s (emrkit backup offsite list)", ErrNoSnapshot, id, r.Repository)
	case 1:
		return found[0], nil
	}
	return Snapshot{}, fmt.Errorf("snapshot ID %s is ambiguous (%d snapshots); give more of it", id, len(found))
}

// Fetch restores snapshot s into dir (which must be empty) and returns the backup file's
// path there.
func (r Repo) Fetch(ctx context.Context, s Snapshot, dir string) (string, error) {
	file, err := s.File()
	if err != nil {
		return "", err
	}
	if _, err := r.run(ctx, nil, "restore", s.ID, "--target", dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, file)
	fi, err := os.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("restic restored snapshot %s but %s is not there: %w", s.ShortID, path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("snapshot %s: %s is not a regular file", s.ShortID, file)
	}
	return path, nil
}

// Verify is restic check, reading back subset of the data ("10%", "" for the structure
// only), which proves the copies can be read, not only that they were written.
func (r Repo) Verify(ctx context.Context, subset string) error {
	args := []string{"check"}
	if subset != "" {
		args = append(args, "--read-data-subset", subset)
	}
	_, err := r.run(ctx, nil, args...)
	return err
}

// CheckRecord is the file in emrkit's state dir holding the last repository check, for
// doctor.
const CheckRecord = "offsite-check.json"

// CheckResult is one repository check's outcome.
type CheckResult struct {
	Time    time.Time `json:"time"`
	OK      bool      `json:"ok"`
	Subset  string    `json:"read_data_subset,omitempty"`
	Problem string    `json:"problem,omitempty"`
}

// SaveCheck records res as the last repository check.
func SaveCheck(stateDir string, res CheckResult) error {
	return fsutil.SaveRecord(stateDir, CheckRecord, res)
}

// LastCheck returns the last repository check (ok false: none recorded).
func LastCheck(stateDir string) (CheckResult, bool, error) {
	var res CheckResult
	ok, err := fsutil.LoadRecord(stateDir, CheckRecord, &res)
	return res, ok, err
}
