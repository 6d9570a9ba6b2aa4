package pgp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/props"
	"github.com/emrkit/emrkit/pkg/step"
)

// Steps returns the PGP steps for cfg, in run order: the GnuPG home, the generated secrets,
// the key in Tomcat's keyring, then the five properties (demographic.export.encryptedOnly
// last, so OSCAR insists on encryption only once it can encrypt). Mode none yields none, so
// a plan run reverts an earlier setup. Configuration errors (pgp.uid) are errors; host
// problems (no Tomcat user, an unreadable key) surface from the steps' Preflight and Check,
// so status and revert still build the plan.
func Steps(cfg config.Config, env Env, since string) ([]step.Step, error) {
	env = env.withDefaults()
	mode := cfg.PGP.Mode
	if mode == "none" || mode == "" {
		return nil, nil
	}
	if mode == "generate" {
		if _, _, _, err := splitUID(cfg.PGP.UID); err != nil {
			return nil, err
		}
		if _, err := writeConfig(env.Algorithm); err != nil {
			return nil, err
		}
	}
	acct, err := Tomcat(cfg, env)
	if err != nil {
		return []step.Step{blocked(mode, since, err)}, nil
	}
	var m modeSteps
	if mode == "symmetric" {
		m = symmetricSteps(cfg, env, acct, since)
	} else {
		home, err := GnupgHome(cfg, acct)
		if err != nil {
			return []step.Step{blocked(mode, since, err)}, nil
		}
		m = keySteps(cfg, env, acct, home, since)
	}
	steps := m.steps
	for _, k := range []string{PropBin, PropCmd, PropKey, PropEnv, PropEncryptedOnly} {
		s, err := m.property(env.Properties, k, since)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// modeSteps are one mode's steps before the properties, and what the properties hold.
type modeSteps struct {
	steps []step.Step
	call  map[string]string
	// readKey, in the key modes, gives the key whose fingerprint PGP_KEY holds.
	readKey func() ([]byte, error)
	// afterKey gates a step that reads the key on the step that generates it (generate mode).
	afterKey func(step.Step) step.Step
}

// symmetricSteps: the passphrase file, and OSCAR's call `emrkit oscar-encrypt FILE PASSFILE`.
func symmetricSteps(cfg config.Config, env Env, acct Account, since string) modeSteps {
	files := Paths(cfg)
	return modeSteps{steps: []step.Step{symmetricSecrets(files, acct, since)}, call: map[string]string{
		PropBin: env.Emrkit, PropCmd: OSCAREncryptCommand, PropKey: files.Symmetric, PropEnv: SymmetricEnv,
		PropEncryptedOnly: "true"}}
}

// keySteps: Tomcat's GnuPG home, the generated key set (generate mode), the key in the
// keyring, and OSCAR's call `pgpgpg -e FILE FINGERPRINT` with GNUPGHOME. In public-key mode
// the fingerprint names the step, so a new key is a new step and `emrkit apply` undoes the
// old one's entry (taking the old key out of the keyring).
func keySteps(cfg config.Config, env Env, acct Account, home, since string) modeSteps {
	files := Paths(cfg)
	key := KeyStep{GPG: GPG{Path: env.GPG, Conf: env.GPGConf, Home: home, Account: &acct},
		Needs: map[string]string{env.PGPGPG: "pgpgpg"}, SinceVersion: since}
	m := modeSteps{steps: []step.Step{HomeStep{Path: home, Account: acct, SinceVersion: since}},
		call: map[string]string{PropBin: env.PGPGPG, PropCmd: "-e", PropEnv: "GNUPGHOME=" + home, PropEncryptedOnly: "true"}}
	var keyStep step.Step
	if cfg.PGP.Mode == "generate" {
		key.Label, key.Read = GeneratedLabel, readFile(files.PublicKey)
		gen := generatedKey(cfg.PGP.UID, env.Algorithm, files, since)
		m.afterKey = func(s step.Step) step.Step { return afterGenerated(s, gen.ID(), files.PublicKey) }
		m.steps = append(m.steps, gen)
		keyStep = m.afterKey(key)
	} else {
		key.Read, key.Validate, key.Label = readFile(cfg.PGP.PublicKey), true, cfg.PGP.PublicKey
		if data, err := key.Read(); err == nil {
			if pk, err := ParsePublicKey(data, time.Now()); err == nil {
				key.Label = pk.Fingerprint
			}
		}
		keyStep = key
	}
	m.readKey = key.Read
	m.steps = append(m.steps, keyStep)
	return m
}

// afterGenerated defers s until the generated public key exists. The key is made by the step
// gen, so nothing may read it while the plan is built, nor in a dry run, where gen does not
// run: the gate tells the runner that s would apply once gen has (step.Gated.After).
func afterGenerated(s step.Step, gen, public string) step.Step {
	return step.Gated{Step: s, After: gen, Gate: func(context.Context) error {
		if _, err := os.Lstat(public); errors.Is(err, fs.ErrNotExist) {
			return &step.DeferredError{Reason: "waits for the generated export key " + public}
		}
		return nil
	}}
}

func readFile(path string) func() ([]byte, error) {
	return func() ([]byte, error) { return fsutil.ReadFile(path, fsutil.TextLimit) }
}

func generatedKey(uid string, algo Algorithm, files Files, since string) SecretsStep {
	return SecretsStep{
		What:     fmt.Sprintf("generate the export key (%s) in %s; move its private key and passphrase off the server", algo, files.Dir),
		Manifest: files.KeyManifest,
		Files: []SecretFile{
			{Path: files.Passphrase, Mode: 0o600, Movable: true},
			{Path: files.PrivateKey, Mode: 0o600, Movable: true},
			{Path: files.PublicKey, Mode: 0o644},
		},
		Generate: func() ([][]byte, error) {
			ks, err := GenerateKey(uid, algo)
			return [][]byte{ks.Passphrase, ks.Private, ks.Public}, err
		},
		SinceVersion: since,
	}
}

func symmetricSecrets(files Files, acct Account, since string) SecretsStep {
	group := strconv.Itoa(acct.GID)
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return SecretsStep{
		What:         fmt.Sprintf("generate the export passphrase %s (0640 root:%s)", files.Symmetric, group),
		Manifest:     files.SymmetricManifest,
		Files:        []SecretFile{{Path: files.Symmetric, Mode: 0o640, GID: acct.GID}},
		Generate:     func() ([][]byte, error) { p, err := NewPassphrase(); return [][]byte{p}, err },
		SinceVersion: since,
	}
}

// property sets key in oscar.properties, deferred while OSCAR is not installed. In the key
// modes PGP_KEY is the fingerprint of the key m.readKey gives.
func (m modeSteps) property(path, key, since string) (step.Step, error) {
	if path == "" {
		return step.Unavailable{
			StepID: props.Kind + ":oscar.properties#" + key, StepKind: props.Kind,
			StepTarget: "oscar.properties#" + key, StepSince: since,
			What:   fmt.Sprintf("set %s in oscar.properties", key),
			Reason: "OSCAR is not installed (no oscar.properties found); run `emrkit apply` after installing it",
		}, nil
	}
	if key == PropKey && m.readKey != nil {
		var s step.Step = keyProp{Path: path, Read: m.readKey, SinceVersion: since}
		if m.afterKey != nil {
			s = m.afterKey(s)
		}
		return s, nil
	}
	s := props.KeyStep{Path: path, Key: key, Value: m.call[key], SinceVersion: since}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}

// blocked stands in for the PGP steps when they cannot be built on this host: deferred
// (Tomcat not installed) or failing with the fix (an explicit Tomcat user that is missing).
func blocked(mode, since string, err error) step.Step {
	id := HomeKind + ":oscar-export"
	if d, ok := step.IsDeferred(err); ok {
		return step.Unavailable{StepID: id, StepKind: HomeKind, StepTarget: "oscar-export", StepSince: since,
			What: "encrypted OSCAR exports (pgp.mode " + mode + ")", Reason: d.Reason}
	}
	return failing{Unavailable: step.Unavailable{StepID: id, StepKind: HomeKind, StepTarget: "oscar-export", StepSince: since,
		What: "encrypted OSCAR exports (pgp.mode " + mode + ")"}, err: err}
}

// failing is a step that cannot run; Preflight stops the run before anything changes.
type failing struct {
	step.Unavailable
	err error
}

func (f failing) Preflight(context.Context) error     { return f.err }
func (f failing) Check(context.Context) (bool, error) { return false, f.err }
func (f failing) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	return nil, nil, f.err
}
func (f failing) Apply(context.Context, json.RawMessage) error { return f.err }
