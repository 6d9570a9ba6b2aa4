package tunnel

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/pkg/journal"
)

// closedPort is a port on 127.0.0.1 nothing listens on: the portal host is unreachable.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// tree describes every entry under root: type, mode, owner, content hash or link target.
func tree(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		lines = append(lines, p+" "+desc)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestApplyReapplyUndo: apply, apply again (nothing changes), undo: the account files hold
// no line of the test's account, and the tunnel's directories are as they were, the admin's
// files in them untouched.
func TestApplyReapplyUndo(t *testing.T) {
	requireRoot(t)
	dir := publicDir(t)
	env := newEnv(t, dir, testAccount("tunnel", 'u'))
	// What a Debian host already has there: emrkit's configuration, another unit and its
	// enablement.
	must(t, os.WriteFile(filepath.Join(env.ConfigDir, "emrkit.yaml"), []byte("profile: openemr\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(env.UnitDir, "other.service"), []byte("[Service]\nExecStart=/bin/true\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(env.UnitDir, "multi-user.target.wants"), 0o755))
	must(t, os.Symlink(filepath.Join(env.UnitDir, "other.service"), filepath.Join(env.UnitDir, "multi-user.target.wants", "other.service")))
	accounts, files := accountLines(t, env.SystemUser), tree(t, dir)
	if accounts != "" {
		t.Fatalf("the test account exists already:\n%s", accounts)
	}

	tun := Tunnel{Host: "127.0.0.1", Port: closedPort(t), User: "tunnel-clinic1", HostKey: edKey,
		Forwards: []Forward{{RemotePort: 18443, LocalPort: 443}, {RemotePort: 13306, LocalPort: 3307}}}
	steps, err := Steps(tun, env, Since)
	must(t, err)
	r, out, journalPath := newRunner(t, env)
	ctx := ctxT(t, time.Minute)

	rep, err := r.Apply(ctx, steps)
	if err != nil || rep.Applied != 6 || rep.Deferred != 1 {
		t.Fatalf("apply: %+v %v\n%s", rep, err, out)
	}
	a, err := lookupAccount(env.SystemUser)
	must(t, err)
	assertKey(t, env, a, journalPath)
	if got := accountLines(t, env.SystemUser); !strings.Contains(got, fmt.Sprintf("/etc/passwd: %s:x:%d:%d::%s:%s\n", env.SystemUser, a.UID, a.GID, env.Home, nologinPath)) {
		t.Errorf("account lines:\n%s", got)
	}
	for _, p := range []string{env.SSHConfigPath(), env.KnownHostsPath(), env.UnitPath()} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	if target, err := os.Readlink(env.WantsLink()); err != nil || target != env.UnitPath() {
		t.Errorf("enablement: %q %v", target, err)
	}

	out.Reset()
	rep, err = r.Apply(ctx, steps)
	if err != nil || rep.Changed() || rep.Unchanged != 6 || rep.Deferred != 1 || strings.Contains(out.String(), "applied") {
		t.Errorf("re-apply changed something: %+v %v\n%s", rep, err, out)
	}
	out.Reset()
	rep, err = r.Revert(ctx, func(journal.Entry) bool { return true })
	if err != nil || rep.Undone != 6 || rep.Kept+rep.Skipped+rep.Unknown != 0 {
		t.Errorf("undo: %+v %v\n%s", rep, err, out)
	}
	t.Logf("undo:\n%s", out)
	if got := accountLines(t, env.SystemUser); got != accounts {
		t.Errorf("account lines after undo:\n%s", got)
	}
	if got := tree(t, dir); got != files {
		t.Errorf("files after undo:\n%s\nwant\n%s", got, files)
	}
	entries, err := journal.Read(filepath.Dir(journalPath))
	must(t, err)
	for _, e := range entries {
		if e.State != journal.Undone {
			t.Errorf("%s is %s after undo", e.ID, e.State)
		}
	}
}

// TestUndoKeepsWhatEmrkitDidNotMake: an account that was there before is used and never
// removed; a key an admin put in place of emrkit's is kept, and so is the home holding it.
func TestUndoKeepsWhatEmrkitDidNotMake(t *testing.T) {
	requireRoot(t)
	tun := Tunnel{Host: "127.0.0.1", Port: closedPort(t), User: "tunnel-clinic1", HostKey: edKey,
		Forwards: []Forward{{RemotePort: 18443, LocalPort: 443}}}
	ctx := ctxT(t, time.Minute)

	t.Run("existing user", func(t *testing.T) {
		dir := publicDir(t)
		env := newEnv(t, dir, testAccount("tunnel", 'e'))
		if out, err := exec.Command(adduserPath, "--system", "--group", "--home", env.Home, "--shell", nologinPath,
			"--disabled-password", env.SystemUser).CombinedOutput(); err != nil {
			t.Fatalf("adduser: %v\n%s", err, out)
		}
		accounts := accountLines(t, env.SystemUser)
		steps, err := Steps(tun, env, Since)
		must(t, err)
		r, out, _ := newRunner(t, env)
		rep, err := r.Apply(ctx, steps)
		if err != nil || rep.Applied != 5 || rep.Unchanged != 1 {
			t.Fatalf("apply: %+v %v\n%s", rep, err, out)
		}
		if _, ok := r.Journal.Get(UserKind + ":" + env.SystemUser); ok {
			t.Error("an existing account was journaled")
		}
		if _, err := r.Revert(ctx, func(journal.Entry) bool { return true }); err != nil {
			t.Fatal(err)
		}
		if got := accountLines(t, env.SystemUser); got != accounts {
			t.Errorf("undo changed the existing account:\n%s\nwant\n%s", got, accounts)
		}
		if ents, err := os.ReadDir(env.Home); err != nil || len(ents) != 0 {
			t.Errorf("home after undo: %v %v", ents, err)
		}

		// An existing account with another home is refused before anything changes.
		other := env
		other.Home = filepath.Join(dir, "elsewhere")
		steps, err = Steps(tun, other, Since)
		must(t, err)
		r2, _, _ := newRunner(t, other)
		if _, err := r2.Apply(ctx, steps); err == nil || !strings.Contains(err.Error(), "already exists with home") {
			t.Errorf("another home: %v", err)
		}
	})

	t.Run("replaced key", func(t *testing.T) {
		dir := publicDir(t)
		env := newEnv(t, dir, testAccount("tunnel", 'k'))
		steps, err := Steps(tun, env, Since)
		must(t, err)
		r, out, _ := newRunner(t, env)
		if _, err := r.Apply(ctx, steps); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		// The admin makes a new key with the same command.
		must(t, os.Remove(env.KeyPath()))
		must(t, os.Remove(env.KeyPath()+".pub"))
		if out, err := exec.Command("setpriv", "--reuid", env.SystemUser, "--regid", env.SystemUser, "--init-groups", "--",
			sshKeygenPath, "-t", "ed25519", "-N", "", "-q", "-C", env.SystemUser+"@admin", "-f", env.KeyPath()).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen as %s: %v\n%s", env.SystemUser, err, out)
		}
		replaced := tree(t, env.Home)
		out.Reset()
		rep, err := r.Apply(ctx, steps)
		if err != nil || rep.Changed() {
			t.Errorf("apply after the admin's key: %+v %v\n%s", rep, err, out)
		}
		out.Reset()
		rep, err = r.Revert(ctx, func(journal.Entry) bool { return true })
		if err != nil || rep.Kept != 1 {
			t.Errorf("undo: %+v %v\n%s", rep, err, out)
		}
		t.Logf("undo:\n%s", out)
		if !strings.Contains(out.String(), "was replaced since emrkit made it") || !strings.Contains(out.String(), "kept "+env.Home) {
			t.Errorf("undo does not say what it kept:\n%s", out)
		}
		if got := tree(t, env.Home); got != replaced {
			t.Errorf("the admin's key changed:\n%s\nwant\n%s", got, replaced)
		}
		if _, err := lookupAccount(env.SystemUser); !errors.Is(err, errNoAccount) {
			t.Errorf("the account emrkit added survived: %v", err)
		}
	})
}

// TestKeyUndoAfterCrash: a crash between the renames leaves the public half and the keygen
// directory; undo removes both (the key never landed), and a resumed apply finishes the key.
func TestKeyUndoAfterCrash(t *testing.T) {
	dir := t.TempDir()
	env := testEnv(dir, "emrkit-tunnel")
	must(t, os.MkdirAll(env.Home, 0o755))
	d := keyDesired{Path: env.KeyPath(), User: env.SystemUser, Nonce: "0011223344556677", Comment: "emrkit-tunnel@clinic 0011223344556677"}
	must(t, os.MkdirAll(keygenDir(d), 0o700))
	must(t, os.WriteFile(filepath.Join(keygenDir(d), KeyFile), []byte("half"), 0o600))
	must(t, os.WriteFile(env.KeyPath()+".pub", []byte(edKey+" "+d.Comment+"\n"), 0o644))
	e := journal.Entry{ID: KeyKind + ":" + d.Path, Kind: KeyKind, State: journal.Pending,
		Desired: mustJSON(t, d), Before: mustJSON(t, keyBefore{})}
	o, detail, err := KeyUndoer{Env: env}.Undo(context.Background(), e)
	if err != nil || o.String() != "already as before" {
		t.Errorf("undo: %v %q %v", o, detail, err)
	}
	if ents, _ := os.ReadDir(env.Home); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	// A public half of someone else's stays.
	must(t, os.WriteFile(env.KeyPath()+".pub", []byte(edKey+" admin@clinic\n"), 0o644))
	if _, _, err := (KeyUndoer{Env: env}).Undo(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.KeyPath() + ".pub"); err != nil {
		t.Errorf("the admin's public key was removed: %v", err)
	}
}

// TestPreflightPortalVersions: an sshd older than 7.8 on the portal host is refused with the
// fix; an unreachable portal host and a server that is not OpenSSH are not errors.
func TestPreflightPortalVersions(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	env := testEnv(dir, "emrkit-tunnel-nobody")
	serve := func(banner string) int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\r\n", banner)
				c.Close()
			}
		}()
		return ln.Addr().(*net.TCPAddr).Port
	}
	ctx := ctxT(t, time.Minute)
	tun := testTunnel()
	tun.Host = "127.0.0.1"
	for banner, want := range map[string]string{
		"SSH-2.0-OpenSSH_7.4p1 Debian-10+deb9u7": "runs OpenSSH 7.4; the tunnel's authorized_keys line (permitlisten) needs 7.8 or newer there: upgrade openssh-server on the portal host",
		"SSH-2.0-OpenSSH_7.8":                    "",
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6": "",
		"SSH-2.0-dropbear_2022.83":               "",
	} {
		tun.Port = serve(banner)
		err := preflightPortal(ctx, env, tun)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", banner, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: got %v, want %q", banner, err, want)
		}
	}
	tun.Port = closedPort(t)
	if err := preflightPortal(ctx, env, tun); err != nil {
		t.Errorf("unreachable portal host: %v", err)
	}
	// ssh, as the system user, must reach its configuration.
	must(t, os.MkdirAll(env.ConfigDir, 0o700))
	if err := preflightPortal(ctx, env, tun); err == nil || !strings.Contains(err.Error(), "chmod o+x "+env.ConfigDir) {
		t.Errorf("a configuration directory the tunnel cannot read: %v", err)
	}
	must(t, os.Chmod(env.ConfigDir, 0o755))
	must(t, os.Chmod(filepath.Dir(env.ConfigDir), 0o755))
	// A configuration already in place is not checked again: no network on every apply.
	tun.Port = serve("SSH-2.0-OpenSSH_7.4p1")
	cfg, err := SSHConfig(env, tun)
	must(t, err)
	kh, err := KnownHosts(tun)
	must(t, err)
	must(t, os.WriteFile(env.SSHConfigPath(), cfg, 0o644))
	must(t, os.WriteFile(env.KnownHostsPath(), kh, 0o644))
	if err := preflightPortal(ctx, env, tun); err != nil {
		t.Errorf("converged configuration: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
