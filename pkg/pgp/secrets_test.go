package pgp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// secretsLab is a SecretsStep over a temp dir whose generator counts its calls.
type secretsLab struct {
	t     *testing.T
	s     SecretsStep
	calls int
}

func newSecretsLab(t *testing.T) *secretsLab {
	dir := filepath.Join(t.TempDir(), "pgp")
	l := &secretsLab{t: t}
	l.s = SecretsStep{
		What:     "test set",
		Manifest: filepath.Join(dir, "set.manifest.json"),
		Files: []SecretFile{
			{Path: filepath.Join(dir, "pass"), Mode: 0o600, Movable: true},
			{Path: filepath.Join(dir, "sec"), Mode: 0o600, Movable: true},
			{Path: filepath.Join(dir, "pub"), Mode: 0o644},
		},
		Generate: func() ([][]byte, error) {
			l.calls++
			n := fmt.Sprint(l.calls)
			return [][]byte{[]byte("pass" + n), []byte("sec" + n), []byte("pub" + n)}, nil
		},
	}
	return l
}

func (l *secretsLab) capture() json.RawMessage {
	l.t.Helper()
	if err := l.s.Preflight(context.Background()); err != nil {
		l.t.Fatalf("preflight: %v", err)
	}
	d, _, err := l.s.Capture(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	return d
}

func (l *secretsLab) apply(d json.RawMessage) {
	l.t.Helper()
	if err := l.s.Apply(context.Background(), d); err != nil {
		l.t.Fatalf("apply: %v", err)
	}
}

func (l *secretsLab) inSync(want bool) {
	l.t.Helper()
	if ok, err := l.s.Check(context.Background()); err != nil || ok != want {
		l.t.Fatalf("check = %v, %v; want %v", ok, err, want)
	}
}

func (l *secretsLab) entry(d json.RawMessage) journal.Entry {
	return journal.Entry{ID: l.s.ID(), Kind: SecretsKind, Desired: d, Before: json.RawMessage(`{}`)}
}

func read(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSecretsResumeAfterCrash: a crash after the manifest and some files converges on a
// complete set under the journaled nonce; nothing secret is in Desired.
func TestSecretsResumeAfterCrash(t *testing.T) {
	l := newSecretsLab(t)
	l.inSync(false)
	d := l.capture()
	if strings.Contains(string(d), "pass1") {
		t.Fatal("Desired holds a secret")
	}
	l.apply(d)
	l.inSync(true)
	// The crash: the manifest and the movable files were written, the public key not.
	os.Remove(l.s.Files[2].Path)
	l.inSync(false)
	if err := l.s.Preflight(context.Background()); err != nil {
		t.Fatalf("preflight after the crash: %v", err)
	}
	l.apply(d) // the runner resumes the pending entry with the journaled Desired
	l.inSync(true)
	if l.calls != 2 || read(t, l.s.Files[2].Path) != "pub2" || read(t, l.s.Files[0].Path) != "pass2" {
		t.Errorf("resume did not write one fresh complete set (calls %d)", l.calls)
	}
	if ok, _ := (SecretsUndoer{}).Holds(context.Background(), l.entry(d)); !ok {
		t.Error("Holds is false after the resumed apply")
	}
}

// TestSecretsNeverOverwriteAnEarlierKey: a set from an earlier run whose public half is gone
// is not replaced: its private half may be the only key to earlier exports.
func TestSecretsNeverOverwriteAnEarlierKey(t *testing.T) {
	l := newSecretsLab(t)
	l.apply(l.capture())
	os.Remove(l.s.Files[2].Path)
	d2 := l.capture() // drift: a new entry version with a new nonce
	err := l.s.Apply(context.Background(), d2)
	if err == nil || !strings.Contains(err.Error(), "holds what emrkit generated earlier") {
		t.Fatalf("apply over an earlier set: %v", err)
	}
	if read(t, l.s.Files[1].Path) != "sec1" {
		t.Error("the earlier private key was overwritten")
	}
}

// TestSecretsMovedOffAndUndo: the admin takes the private key and passphrase away, as told:
// not drift; undo then removes the public key and the manifest and keeps an edited file.
func TestSecretsMovedOffAndUndo(t *testing.T) {
	l := newSecretsLab(t)
	d := l.capture()
	l.apply(d)
	os.Remove(l.s.Files[0].Path)
	os.Remove(l.s.Files[1].Path)
	l.inSync(true)
	o, detail, err := SecretsUndoer{}.Undo(context.Background(), l.entry(d))
	if err != nil || o != step.Restored {
		t.Fatalf("undo: %v %s %v", o, detail, err)
	}
	if _, err := os.Stat(filepath.Dir(l.s.Manifest)); err == nil {
		t.Error("the pgp directory is still there")
	}

	l = newSecretsLab(t)
	d = l.capture()
	l.apply(d)
	os.WriteFile(l.s.Files[2].Path, []byte("edited by the admin"), 0o644)
	l.inSync(false)
	if err := l.s.Preflight(context.Background()); err == nil {
		t.Error("preflight accepts an edited file")
	}
	o, detail, err = SecretsUndoer{}.Undo(context.Background(), l.entry(d))
	if err != nil || o != step.Kept || !strings.Contains(detail, "pub") {
		t.Fatalf("undo of an edited set: %v %q %v", o, detail, err)
	}
	if read(t, l.s.Files[2].Path) != "edited by the admin" {
		t.Error("the edited file was removed")
	}
	if _, err := os.Stat(l.s.Files[1].Path); err == nil {
		t.Error("the unedited private key was left")
	}
}

// TestSecretsModeDriftRepaired: a loosened mode is drift, repaired without a new secret.
func TestSecretsModeDriftRepaired(t *testing.T) {
	l := newSecretsLab(t)
	l.apply(l.capture())
	os.Chmod(l.s.Files[0].Path, 0o644)
	l.inSync(false)
	l.apply(l.capture())
	l.inSync(true)
	if l.calls != 1 {
		t.Errorf("repair generated a new set (%d calls)", l.calls)
	}
	if fi, _ := os.Stat(l.s.Files[0].Path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestSplitUID(t *testing.T) {
	for uid, want := range map[string]string{
		"OSCAR Export <root@localhost>":       "OSCAR Export||root@localhost",
		"OSCAR Export (clinic) <a@b.example>": "OSCAR Export|clinic|a@b.example",
		"Clinic":                              "Clinic||",
	} {
		n, c, e, err := splitUID(uid)
		if err != nil || n+"|"+c+"|"+e != want {
			t.Errorf("splitUID(%q) = %q|%q|%q, %v", uid, n, c, e, err)
		}
	}
	for _, bad := range []string{"", "<a@b>", "a <b> c", "x\ny"} {
		if _, _, _, err := splitUID(bad); err == nil {
			t.Errorf("splitUID(%q) accepted", bad)
		}
	}
}
