package pgp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/emrkit/emrkit/pkg/config"
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
	var steps []step.Step
	var call map[string]string
	var readKey func() ([]byte, error)
	if mode == "symmetric" {
		steps, call = symmetricSteps(cfg, env, acct, since)
	} else {
		home, err := GnupgHome(cfg, acct)
		if err != nil {
			return []step.Step{blocked(mode, since, err)}, nil
		}
		steps, call, readKey = keySteps(cfg, env, acct, home, since)
	}
	for _, k := range []string{PropBin, PropCmd, PropKey, PropEnv, PropEncryptedOnly} {
		var read func() ([]byte, error)
		if k == PropKey {
			read = readKey
		}
		s, err := property(env.Properties, k, call[k], read, since)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// symmetricSteps: the passphrase file, and OSCAR's call `emrkit oscar-encrypt FILE PASSFILE`.
func symmetricSteps(cfg config.Config, env Env, acct Account, since string) ([]step.Step, map[string]string) {
	files := Paths(cfg, env)
	return []step.Step{symmetricSecrets(files, acct, since)}, map[string]string{
		PropBin: env.Emrkit, PropCmd: OSCAREncryptCommand, PropKey: files.Symmetric, PropEnv: SymmetricEnv,
		PropEncryptedOnly: "true"}
}

// keySteps: Tomcat's GnuPG home, the generated key set (generate mode), the key in the
// keyring, and OSCAR's call `pgpgpg -e FILE FINGERPRINT` with GNUPGHOME. In public-key mode
// the fingerprint names the step, so a new key is a new step and `emrkit apply` undoes the
// old one's entry (taking the old key out of the keyring).
func keySteps(cfg config.Config, env Env, acct Account, home, since string) ([]step.Step, map[string]string, func() ([]byte, error)) {
	files := Paths(cfg, env)
	key := KeyStep{GPG: GPG{Path: env.GPG, Conf: env.GPGConf, Home: home, Account: &acct},
		Needs: map[string]string{env.PGPGPG: "pgpgpg"}, SinceVersion: since}
	steps := []step.Step{HomeStep{Path: home, Account: acct, SinceVersion: since}}
	if cfg.PGP.Mode == "generate" {
		key.Label, key.Read = "generated", readFile(files.PublicKey)
		steps = append(steps, generatedKey(cfg.PGP.UID, env.Algorithm, files, since))
	} else {
		key.Read, key.Validate, key.Label = readFile(cfg.PGP.PublicKey), true, cfg.PGP.PublicKey
		if data, err := key.Read(); err == nil {
			if pk, err := ParsePublicKey(data, time.Now()); err == nil {
				key.Label = pk.Fingerprint
			}
		}
	}
	call := map[string]string{PropBin: env.PGPGPG, PropCmd: "-e", PropEnv: "GNUPGHOME=" + home, PropEncryptedOnly: "true"}
	return append(steps, key), call, key.Read
}

func readFile(path string) func() ([]byte, error) {
	return func() ([]byte, error) { return os.ReadFile(path) }
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

// property sets key in oscar.properties, deferred while OSCAR is not installed. readKey, for
// PGP_KEY in the key modes, gives the key whose fingerprint is the value.
func property(path, key, value string, readKey func() ([]byte, error), since string) (step.Step, error) {
	if path == "" {
		return step.Unavailable{
			StepID: props.Kind + ":oscar.properties#" + key, StepKind: props.Kind,
			StepTarget: "oscar.properties#" + key, StepSince: since,
			What:   fmt.Sprintf("set %s in oscar.properties", key),
			Reason: "OSCAR is not installed (no oscar.properties found); run `emrkit apply` after installing it",
		}, nil
	}
	if readKey != nil {
		return keyProp{Path: path, Read: readKey, SinceVersion: since}, nil
	}
	s := props.KeyStep{Path: path, Key: key, Value: value, SinceVersion: since}
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
