package replica

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// nonceFile marks Env.DataDir as emrkit's; its content is the nonce the journal holds.
const nonceFile = ".emrkit-created"

// shutdownTimeout bounds waiting for the intermediate to stop before its datadir goes.
const shutdownTimeout = 120 * time.Second

type dataDirDesired struct {
	Dir     string `json:"dir"`
	Nonce   string `json:"nonce"`
	Socket  string `json:"socket"`
	PidFile string `json:"pid_file"`
}

type dataDirBefore struct {
	Existed bool `json:"existed"`
}

// dataDirStep creates Env.DataDir and initialises the intermediate's datadir in it.
type dataDirStep struct {
	env   Env
	since string
}

func (s dataDirStep) Kind() string   { return DataDirKind }
func (s dataDirStep) Target() string { return s.env.DataDir }
func (s dataDirStep) ID() string     { return DataDirKind + ":" + s.env.DataDir }
func (s dataDirStep) Since() string  { return s.since }
func (s dataDirStep) Describe() string {
	return "portal replica data directory " + s.env.DataDir + " (mariadb-install-db)"
}

// mysqlUser returns the uid and gid of the mysql account mariadb-server creates.
func mysqlUser() (int, int, error) {
	u, err := user.Lookup("mysql")
	if err != nil {
		return 0, 0, &step.DeferredError{Reason: "there is no mysql user (is mariadb-server installed?)"}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("user mysql has a non-numeric uid or gid")
	}
	return uid, gid, nil
}

// Preflight refuses a DataDir emrkit did not create, and defers without a mysql user.
func (s dataDirStep) Preflight(context.Context) error {
	if _, _, err := mysqlUser(); err != nil {
		return err
	}
	if _, err := lookTool("mariadb-install-db", "mariadb-server"); err != nil {
		return err
	}
	fi, err := os.Stat(s.env.DataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("portal replica data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory; move it aside, then run emrkit apply", s.env.DataDir)
	}
	if _, err := os.Stat(filepath.Join(s.env.DataDir, nonceFile)); err != nil {
		if initialised(s.env.dataDir()) {
			return nil // someone else's complete server: Check leaves it alone
		}
		return fmt.Errorf("%s exists and was not created by emrkit; move it aside, then run emrkit apply", s.env.DataDir)
	}
	return nil
}

func initialised(datadir string) bool {
	fi, err := os.Stat(filepath.Join(datadir, "mysql"))
	return err == nil && fi.IsDir()
}

func (s dataDirStep) Check(context.Context) (bool, error) {
	return initialised(s.env.dataDir()), nil
}

func (s dataDirStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	b := dataDirBefore{}
	if _, err := os.Lstat(s.env.DataDir); err == nil {
		b.Existed = true
	}
	dj, err := json.Marshal(dataDirDesired{Dir: s.env.DataDir, Nonce: hex.EncodeToString(nonce),
		Socket: s.env.socket(), PidFile: s.env.pidFile()})
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return dj, bj, err
}

func readNonce(dir string) (string, error) {
	b, err := fsutil.ReadFile(filepath.Join(dir, nonceFile), fsutil.TextLimit)
	return strings.TrimSpace(string(b)), err
}

// Apply creates DataDir (mysql, 0750) with the nonce file, then runs mariadb-install-db into
// data.new and renames it to data: data/ exists only complete, and a run resumed after a
// crash starts the initialisation over.
func (s dataDirStep) Apply(ctx context.Context, raw json.RawMessage) error {
	var d dataDirDesired
	if err := json.Unmarshal(raw, &d); err != nil || d.Nonce == "" {
		return fmt.Errorf("%s: desired state: %v", s.ID(), err)
	}
	uid, gid, err := mysqlUser()
	if err != nil {
		return err
	}
	installDB, err := lookTool("mariadb-install-db", "mariadb-server")
	if err != nil {
		return err
	}
	dir := s.env.DataDir
	switch nonce, err := readNonce(dir); {
	case err == nil && nonce != d.Nonce:
		return fmt.Errorf("%s was created by another emrkit run than the one journaled; move it aside, then run emrkit apply", dir)
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o750); errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists and was not created by emrkit; move it aside, then run emrkit apply", dir)
		} else if err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := fsutil.WriteAtomic(filepath.Join(dir, nonceFile), []byte(d.Nonce+"\n"), 0o600, &fsutil.Owner{UID: 0, GID: 0}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("read %s: %w", filepath.Join(dir, nonceFile), err)
	}
	if err := fsutil.SetModeOwner(dir, 0o750, &fsutil.Owner{UID: uid, GID: gid}); err != nil {
		return fmt.Errorf("replica data directory: %w", err)
	}
	if initialised(s.env.dataDir()) {
		return nil
	}
	tmp := s.env.tmpDir()
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := fsutil.SetModeOwner(tmp, 0o750, &fsutil.Owner{UID: uid, GID: gid}); err != nil {
		return fmt.Errorf("replica temporary directory: %w", err)
	}
	staging := s.env.dataDir() + ".new"
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("remove %s: %w", staging, err)
	}
	cmd := exec.CommandContext(ctx, installDB,
		"--no-defaults", // must be first
		"--user=mysql",
		"--datadir="+staging,
		"--tmpdir="+tmp,
		// root logs in by unix socket only (root's own processes); no test database.
		"--auth-root-authentication-method=socket", "--auth-root-socket-user=root",
		"--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=32M",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mariadb-install-db into %s: %v: %s", staging, err, lastLines(out.String(), 5))
	}
	if err := os.Rename(staging, s.env.dataDir()); err != nil {
		return fmt.Errorf("rename %s: %w", staging, err)
	}
	return fsutil.SyncDir(dir)
}

// lastLines is the end of a tool's output, on one line, for an error message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// dataDirUndoer removes DataDir while it holds the journaled nonce, stopping the server in it
// first.
type dataDirUndoer struct{}

func (dataDirUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := journal.Decode[dataDirDesired, dataDirBefore](e)
	if err != nil {
		return 0, "", err
	}
	if !safePath.MatchString(d.Dir) || filepath.Clean(d.Dir) != d.Dir || d.Dir == "/" {
		return 0, "", fmt.Errorf("journal entry %s: bad directory %q", e.ID, d.Dir)
	}
	nonce, err := readNonce(d.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Lstat(d.Dir); errors.Is(serr, fs.ErrNotExist) || b.Existed {
			return step.AlreadyBefore, "", nil
		}
		return step.Kept, d.Dir + " no longer holds emrkit's marker; remove it yourself if it is unused", nil
	case err != nil:
		return 0, "", fmt.Errorf("read %s: %w", filepath.Join(d.Dir, nonceFile), err)
	case nonce != d.Nonce:
		return step.Kept, d.Dir + " was created again since (another marker); remove it yourself if it is unused", nil
	}
	if err := shutdown(ctx, d.Socket, d.PidFile); err != nil {
		return 0, "", err
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		return 0, "", fmt.Errorf("remove %s: %w", d.Dir, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(d.Dir)); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

func (dataDirUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := journal.Decode[dataDirDesired, dataDirBefore](e)
	if err != nil {
		return false, err
	}
	nonce, err := readNonce(d.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil && nonce == d.Nonce && initialised(filepath.Join(d.Dir, "data")), err
}

// shutdown stops the intermediate if it still runs (started outside systemd, or systemd's
// stop already done: then it is not running), waiting until its process is gone.
func shutdown(ctx context.Context, socket, pidFile string) error {
	pid := readPid(pidFile)
	db, err := openIntermediate(ctx, socket)
	if err == nil {
		_, err = db.ExecContext(ctx, "SHUTDOWN")
		db.Close()
		if err != nil {
			return fmt.Errorf("shut the portal replica server down: %w", err)
		}
	} else if _, deferred := step.IsDeferred(err); !deferred {
		return err
	}
	if pid == 0 {
		return nil
	}
	deadline := time.Now().Add(shutdownTimeout)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the portal replica server (pid %d) is still running %v after SHUTDOWN; stop it, then run emrkit revert again", pid, shutdownTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	// Only a mariadbd: a stale pid file may name another process now.
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "mariadbd" {
		return 0
	}
	return pid
}

// processGone reports whether pid has exited (a zombie waiting for its parent has).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses; the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}
