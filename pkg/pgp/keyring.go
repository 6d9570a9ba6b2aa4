package pgp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// KeyKind is the journal kind of the export key in Tomcat's keyring.
const KeyKind = "pgp.key"

// GeneratedLabel names a generated key in its step's target (journaled: never change it).
const GeneratedLabel = "generated"

// keyPrior is the key as the keyring held it before emrkit imported it.
type keyPrior struct {
	Present    bool `json:"present"`
	Ownertrust int  `json:"ownertrust"`
}

type keyDesired struct {
	homeDesired
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"` // armored; a resumed run imports exactly this
	// Prior travels with Desired, not only in Before: when the key is replaced (drift), the
	// runner refreshes Desired but keeps the first Before, which describes another key.
	Prior keyPrior `json:"prior"`
}

// KeyStep imports the export key into Tomcat's keyring with ultimate ownertrust, which is
// what lets OSCAR's non-interactive `gpg --encrypt` (through pgpgpg) use it without asking.
type KeyStep struct {
	GPG GPG
	// Label names the key in the target: its fingerprint, or GeneratedLabel.
	Label string
	// Read returns the public key (armored or binary).
	Read func() ([]byte, error)
	// Validate makes Preflight check the key: it exists before any step runs (public-key
	// mode). A generated key appears only when the step before runs.
	Validate bool
	// Needs are programs OSCAR's call relies on, checked by Preflight (path: package).
	Needs        map[string]string
	SinceVersion string
}

func (s KeyStep) Kind() string   { return KeyKind }
func (s KeyStep) Target() string { return s.GPG.Home + "#" + s.Label }
func (s KeyStep) ID() string     { return KeyKind + ":" + s.Target() }
func (s KeyStep) Since() string  { return s.SinceVersion }
func (s KeyStep) Describe() string {
	label := s.Label
	if label == GeneratedLabel {
		label = "(generated key)" // its fingerprint is not known before the key is made
	}
	return fmt.Sprintf("export key %s in %s's keyring %s, trusted", label, s.GPG.Account.Name, s.GPG.Home)
}

func (s KeyStep) key() (PublicKey, []byte, error) {
	data, err := s.Read()
	if err != nil {
		return PublicKey{}, nil, err
	}
	pk, err := ParsePublicKey(data, time.Now())
	if err != nil {
		return PublicKey{}, nil, err
	}
	return pk, data, nil
}

func (s KeyStep) Preflight(context.Context) error {
	if err := s.GPG.Available(); err != nil {
		return err
	}
	for path, pkg := range s.Needs {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not installed; install it: apt-get install %s", path, pkg)
		}
	}
	if s.Validate {
		_, _, err := s.key()
		return err
	}
	return nil
}

// state reads whether fpr is in the keyring and its ownertrust.
func (g GPG) state(ctx context.Context, fpr string) (keyPrior, error) {
	keys, err := g.Fingerprints(ctx)
	if err != nil {
		return keyPrior{}, err
	}
	trust, err := g.Ownertrust(ctx, fpr)
	if err != nil {
		return keyPrior{}, err
	}
	return keyPrior{Present: keys[fpr], Ownertrust: trust}, nil
}

func (s KeyStep) Check(ctx context.Context) (bool, error) {
	if _, err := os.Stat(s.GPG.Home); errors.Is(err, fs.ErrNotExist) {
		return false, nil // gpg would create the home; that is the home step's job
	}
	pk, _, err := s.key()
	if err != nil {
		return false, err
	}
	st, err := s.GPG.state(ctx, pk.Fingerprint)
	if err != nil {
		return false, err
	}
	return st.Present && st.Ownertrust == trustUltimate, nil
}

func (s KeyStep) Capture(ctx context.Context) (json.RawMessage, json.RawMessage, error) {
	pk, data, err := s.key()
	if err != nil {
		return nil, nil, err
	}
	prior := keyPrior{}
	if _, err := os.Stat(s.GPG.Home); err == nil {
		if prior, err = s.GPG.state(ctx, pk.Fingerprint); err != nil {
			return nil, nil, err
		}
	}
	text, err := armorKey(data)
	if err != nil {
		return nil, nil, err
	}
	a := s.GPG.Account
	d, err := json.Marshal(keyDesired{
		homeDesired: homeDesired{Path: s.GPG.Home, User: a.Name, UID: a.UID, GID: a.GID, Home: a.Home},
		Fingerprint: pk.Fingerprint, PublicKey: text, Prior: prior,
	})
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(struct {
		Fingerprint string `json:"fingerprint"`
		keyPrior
	}{pk.Fingerprint, prior})
	return d, b, err
}

// armorKey returns the key as armored text, keeping armored input as it is.
func armorKey(data []byte) (string, error) {
	if bytes.Contains(data, []byte("-----BEGIN PGP PUBLIC KEY BLOCK")) {
		return string(data), nil
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		return "", err
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		return "", err
	}
	return buf.String() + "\n", nil
}

func (s KeyStep) Apply(ctx context.Context, raw json.RawMessage) error {
	var d keyDesired
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	g := s.GPG
	defer g.StopAgent(ctx)
	if err := g.Import(ctx, []byte(d.PublicKey)); err != nil {
		return err
	}
	if err := g.SetOwnertrust(ctx, d.Fingerprint, trustUltimate); err != nil {
		return err
	}
	return g.CheckTrustDB(ctx)
}

// KeyUndoer takes the export key out of the keyring (or gives back its ownertrust, when the
// key was there before emrkit).
type KeyUndoer struct {
	GPG, GPGConf string
}

func decodeKey(e journal.Entry) (keyDesired, error) {
	var d keyDesired
	if err := json.Unmarshal(e.Desired, &d); err != nil {
		return d, fmt.Errorf("journal entry %s: %w", e.ID, err)
	}
	return d, nil
}

func (u KeyUndoer) Undo(ctx context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, err := decodeKey(e)
	if err != nil {
		return 0, "", err
	}
	if _, err := os.Stat(d.Path); errors.Is(err, fs.ErrNotExist) {
		return step.AlreadyBefore, d.Path + " no longer exists", nil
	}
	g := d.gpg(u.GPG, u.GPGConf)
	if err := g.Available(); err != nil {
		return step.Skipped, fmt.Sprintf("gpg is not installed; key %s left in %s", d.Fingerprint, d.Path), nil
	}
	defer g.StopAgent(ctx)
	cur, err := g.state(ctx, d.Fingerprint)
	if err != nil {
		return 0, "", err
	}
	if !d.Prior.Present {
		if !cur.Present {
			return step.AlreadyBefore, "", nil
		}
		if err := g.Delete(ctx, d.Fingerprint); err != nil {
			if strings.Contains(err.Error(), "secret key") {
				return step.Kept, fmt.Sprintf("%s now also holds the secret key of %s; left in place", d.Path, d.Fingerprint), nil
			}
			return 0, "", err
		}
		return step.Restored, "", nil
	}
	switch {
	case !cur.Present:
		return step.Kept, fmt.Sprintf("key %s, there before emrkit, was deleted since", d.Fingerprint), nil
	case cur.Ownertrust != trustUltimate:
		return step.Kept, fmt.Sprintf("ownertrust of %s was changed since emrkit set it", d.Fingerprint), nil
	case d.Prior.Ownertrust == trustUltimate:
		return step.AlreadyBefore, "", nil
	}
	if err := g.SetOwnertrust(ctx, d.Fingerprint, d.Prior.Ownertrust); err != nil {
		return 0, "", err
	}
	if err := g.CheckTrustDB(ctx); err != nil {
		return 0, "", err
	}
	return step.Restored, "ownertrust given back; the key was there before emrkit", nil
}

func (u KeyUndoer) Holds(ctx context.Context, e journal.Entry) (bool, error) {
	d, err := decodeKey(e)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(d.Path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	g := d.gpg(u.GPG, u.GPGConf)
	if err := g.Available(); err != nil {
		return false, err
	}
	cur, err := g.state(ctx, d.Fingerprint)
	if err != nil {
		return false, err
	}
	return cur.Present && cur.Ownertrust == trustUltimate, nil
}
