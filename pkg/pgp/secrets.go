package pgp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// SecretsKind is the journal kind of a set of generated secret files (the export key pair
// and its passphrase, or the symmetric passphrase). See the package doc for why Desired
// holds no secret and the manifest exists.
const SecretsKind = "pgp.secrets"

// SecretFile is one file of a generated set, always owned by root.
type SecretFile struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	GID  int         `json:"gid"`
	// Movable files are ones the admin is told to take off the server (the private key and
	// its passphrase); their absence is not drift.
	Movable bool `json:"movable,omitempty"`
}

type secretsDesired struct {
	Manifest string       `json:"manifest"`
	Nonce    string       `json:"nonce"`
	Files    []SecretFile `json:"files"`
}

// manifest is the root-only record of what emrkit wrote, written before the files.
type manifest struct {
	Nonce  string            `json:"nonce"`
	SHA256 map[string]string `json:"sha256"`
}

// SecretsStep generates Files together, once. Generate returns their contents in order.
type SecretsStep struct {
	What         string
	Manifest     string
	Files        []SecretFile
	Generate     func() ([][]byte, error)
	SinceVersion string
}

func (s SecretsStep) Kind() string     { return SecretsKind }
func (s SecretsStep) Target() string   { return s.Manifest }
func (s SecretsStep) ID() string       { return SecretsKind + ":" + s.Manifest }
func (s SecretsStep) Since() string    { return s.SinceVersion }
func (s SecretsStep) Describe() string { return s.What }

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func readManifest(path string) (manifest, bool, error) {
	var m manifest
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, false, fmt.Errorf("%s is corrupt (%v); move it aside, with the files it lists, to start over", path, err)
	}
	return m, true, nil
}

// fileState is a file as it is on disk, compared with a manifest.
type fileState struct {
	present, matches, modeOK bool
}

func inspect(f SecretFile, m manifest, have bool) (fileState, error) {
	data, err := fsutil.ReadFile(f.Path, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, fmt.Errorf("read %s: %w", f.Path, err)
	}
	st := fileState{present: true, matches: have && m.SHA256[f.Path] == sum(data)}
	if fi, err := os.Stat(f.Path); err == nil {
		sys := fi.Sys().(*syscall.Stat_t)
		st.modeOK = fi.Mode().Perm() == f.Mode && sys.Uid == 0 && int(sys.Gid) == f.GID
	}
	return st, nil
}

// holds reports whether the files are the manifest's (movable ones may be gone).
func holds(files []SecretFile, m manifest, have, checkMode bool) (bool, error) {
	if !have {
		return false, nil
	}
	for _, f := range files {
		st, err := inspect(f, m, have)
		if err != nil {
			return false, err
		}
		switch {
		case !st.present && f.Movable:
		case !st.present, !st.matches, checkMode && !st.modeOK:
			return false, nil
		}
	}
	return true, nil
}

// Preflight refuses files emrkit did not write: they are never overwritten.
func (s SecretsStep) Preflight(context.Context) error {
	m, have, err := readManifest(s.Manifest)
	if err != nil {
		return err
	}
	for _, f := range s.Files {
		st, err := inspect(f, m, have)
		if err != nil {
			return err
		}
		if st.present && !st.matches {
			return fmt.Errorf("%s exists and is not what emrkit wrote there (or was changed since); move it away, then run again", f.Path)
		}
	}
	return nil
}

func (s SecretsStep) Check(context.Context) (bool, error) {
	m, have, err := readManifest(s.Manifest)
	if err != nil {
		return false, err
	}
	return holds(s.Files, m, have, true)
}

// Capture draws the nonce that ties this entry to the manifest Apply writes; no secret is
// decided here (see the package doc).
func (s SecretsStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	n := make([]byte, 16)
	if _, err := rand.Read(n); err != nil {
		return nil, nil, err
	}
	d, err := json.Marshal(secretsDesired{Manifest: s.Manifest, Nonce: hex.EncodeToString(n), Files: s.Files})
	if err != nil {
		return nil, nil, err
	}
	// Preflight guarantees any file present is emrkit's own from an earlier manifest, so
	// the before-state is "none of emrkit's making".
	return d, json.RawMessage(`{"present":false}`), nil
}

func (s SecretsStep) Apply(_ context.Context, raw json.RawMessage) error {
	var d secretsDesired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(d.Manifest), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(d.Manifest), err)
	}
	m, have, err := readManifest(d.Manifest)
	if err != nil {
		return err
	}
	complete, err := holds(d.Files, m, have, false)
	if err != nil {
		return err
	}
	if complete {
		// The contents are emrkit's: only modes or owners drifted. Adopt them under this nonce.
		return s.repair(d, m)
	}
	if have && m.Nonce != d.Nonce {
		for _, f := range d.Files {
			if st, err := inspect(f, m, have); err != nil {
				return err
			} else if st.present {
				return fmt.Errorf("%s holds what emrkit generated earlier, but the rest of its set is gone; restore the missing files, or move %s away to generate anew (exports made with the old set need it to decrypt)", f.Path, filepath.Dir(f.Path))
			}
		}
	}
	return s.write(d)
}

// write generates the set and writes the manifest, then the files (see the package doc).
func (s SecretsStep) write(d secretsDesired) error {
	contents, err := s.Generate()
	if err != nil {
		return err
	}
	if len(contents) != len(d.Files) {
		return fmt.Errorf("internal: %d contents for %d files", len(contents), len(d.Files))
	}
	m := manifest{Nonce: d.Nonce, SHA256: map[string]string{}}
	for i, f := range d.Files {
		m.SHA256[f.Path] = sum(contents[i])
	}
	if err := writeManifest(d.Manifest, m); err != nil {
		return err
	}
	// Movable files first: once a fixed one (the public key) is there, the set is complete
	// even after the admin took the movable ones away, so it must be written last.
	order := make([]int, 0, len(d.Files))
	for _, movable := range []bool{true, false} {
		for i, f := range d.Files {
			if f.Movable == movable {
				order = append(order, i)
			}
		}
	}
	for _, i := range order {
		f := d.Files[i]
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(f.Path), err)
		}
		if err := fsutil.WriteAtomic(f.Path, contents[i], f.Mode, &fsutil.Owner{UID: 0, GID: f.GID}); err != nil {
			return err
		}
	}
	return nil
}

func (s SecretsStep) repair(d secretsDesired, m manifest) error {
	for _, f := range d.Files {
		if _, err := os.Stat(f.Path); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := fsutil.SetModeOwner(f.Path, f.Mode, &fsutil.Owner{UID: 0, GID: f.GID}); err != nil {
			return fmt.Errorf("export secret: %w", err)
		}
	}
	m.Nonce = d.Nonce
	return writeManifest(d.Manifest, m)
}

func writeManifest(path string, m manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteAtomic(path, append(data, '\n'), 0o600, &fsutil.Owner{UID: 0, GID: 0})
}

// SecretsUndoer removes generated files that still hold what emrkit wrote.
type SecretsUndoer struct{}

func decodeSecrets(e journal.Entry) (secretsDesired, error) {
	var d secretsDesired
	if err := json.Unmarshal(e.Desired, &d); err != nil {
		return d, fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	return d, nil
}

func (SecretsUndoer) Undo(_ context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, err := decodeSecrets(e)
	if err != nil {
		return 0, "", err
	}
	m, have, err := readManifest(d.Manifest)
	if err != nil {
		return 0, "", err
	}
	if have && m.Nonce != d.Nonce {
		return step.Kept, d.Manifest + " was rewritten by another run; its files were left in place", nil
	}
	removed, kept := 0, ""
	var secrets []string
	for _, f := range d.Files {
		st, err := inspect(f, m, have)
		switch {
		case err != nil:
			return 0, "", err
		case !st.present:
		case !st.matches:
			kept += f.Path + " "
		default:
			if err := os.Remove(f.Path); err != nil {
				return 0, "", fmt.Errorf("remove %s: %w", f.Path, err)
			}
			removed++
			if f.Movable {
				secrets = append(secrets, filepath.Base(f.Path))
			}
		}
	}
	if have {
		if err := os.Remove(d.Manifest); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, "", fmt.Errorf("remove %s: %w", d.Manifest, err)
		}
		os.Remove(filepath.Dir(d.Manifest)) // only if empty: emrkit's own pgp directory
		fsutil.SyncDir(filepath.Dir(filepath.Dir(d.Manifest)))
	}
	switch {
	case kept != "":
		return step.Kept, "changed since emrkit wrote them, left in place: " + kept[:len(kept)-1], nil
	case removed == 0:
		return step.AlreadyBefore, "", nil
	case len(secrets) > 0:
		// Said out loud: exports encrypted to this key need the copy the admin was told to keep.
		return step.Restored, "removed " + strings.Join(secrets, ", ") + ", still on this server", nil
	}
	return step.Restored, "", nil
}

func (SecretsUndoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, err := decodeSecrets(e)
	if err != nil {
		return false, err
	}
	m, have, err := readManifest(d.Manifest)
	if err != nil {
		return false, err
	}
	if have && m.Nonce != d.Nonce {
		return false, nil
	}
	return holds(d.Files, m, have, false)
}
