package pgp

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/step"
)

// Since is the release that introduced the PGP steps; the plan's catalogue and `emrkit pgp
// setup` must journal the same value.
const Since = "0.3.0"

// Properties OSCAR reads to encrypt exports (design section 8).
const (
	PropBin           = "PGP_BIN"
	PropCmd           = "PGP_CMD"
	PropKey           = "PGP_KEY"
	PropEnv           = "PGP_ENV"
	PropEncryptedOnly = "demographic.export.encryptedOnly"
)

// OSCAREncryptCommand is the hidden emrkit subcommand OSCAR runs in symmetric mode, and
// SymmetricEnv the one harmless environment entry it gets.
const (
	OSCAREncryptCommand = "oscar-encrypt"
	SymmetricEnv        = "EMRKIT_PGP=symmetric"
)

// Env is the host as the PGP steps see it. Zero fields take DefaultEnv's values, so the plan
// sets only what it found (Properties) and tests point the rest elsewhere.
type Env struct {
	// Properties is oscar.properties; "" means OSCAR is not installed and the PGP_* steps
	// are deferred.
	Properties string
	// TomcatUser overrides oscar.tomcat_user; TomcatCandidates replaces DefaultTomcatUsers.
	TomcatUser       string
	TomcatCandidates []string
	GPG, GPGConf     string
	// PGPGPG is PGP_BIN in the key modes; Emrkit is PGP_BIN in symmetric mode.
	PGPGPG, Emrkit string
	// Algorithm of a generated key.
	Algorithm Algorithm
}

// DefaultEnv is the Debian host.
func DefaultEnv() Env {
	return Env{
		GPG: "/usr/bin/gpg", GPGConf: "/usr/bin/gpgconf",
		PGPGPG: "/usr/bin/pgpgpg", Emrkit: "/usr/bin/emrkit",
		Algorithm: DefaultAlgorithm,
	}
}

func (e Env) withDefaults() Env {
	d := DefaultEnv()
	for _, f := range []struct{ v, def *string }{
		{&e.GPG, &d.GPG}, {&e.GPGConf, &d.GPGConf}, {&e.PGPGPG, &d.PGPGPG},
		{&e.Emrkit, &d.Emrkit},
	} {
		if *f.v == "" {
			*f.v = *f.def
		}
	}
	if e.Algorithm == "" {
		e.Algorithm = d.Algorithm
	}
	return e
}

// Files are where emrkit keeps what it generates.
type Files struct {
	Dir                                            string // <state dir>/pgp, 0700 root
	Passphrase, PrivateKey, PublicKey, KeyManifest string // generate mode
	// Symmetric is the passphrase OSCAR encrypts with in symmetric mode
	// (paths.pgp_passphrase_file). Tomcat must read it, so it cannot live in the state dir
	// (0700 root): it is 0640 root:<Tomcat group>.
	Symmetric, SymmetricManifest string
}

// Paths returns the files for cfg.
func Paths(cfg config.Config) Files {
	dir := filepath.Join(cfg.Paths.StateDir, "pgp")
	return Files{
		Dir:               dir,
		Passphrase:        filepath.Join(dir, "export-key.pass"),
		PrivateKey:        filepath.Join(dir, "export-key.sec.asc"),
		PublicKey:         filepath.Join(dir, "export-key.pub.asc"),
		KeyManifest:       filepath.Join(dir, "export-key.manifest.json"),
		Symmetric:         cfg.Paths.PGPPassphrase(),
		SymmetricManifest: filepath.Join(dir, "symmetric.manifest.json"),
	}
}

// Tomcat returns the account OSCAR runs as; a *step.DeferredError when Tomcat is not there.
func Tomcat(cfg config.Config, env Env) (Account, error) {
	return resolveTomcat(cfg.OSCAR.TomcatUser, env.TomcatUser, env.TomcatCandidates)
}

// GnupgHome returns Tomcat's GnuPG home: pgp.gnupghome, or .gnupg in Tomcat's home.
func GnupgHome(cfg config.Config, a Account) (string, error) { return gnupgHome(cfg.PGP.GnupgHome, a) }

// Undoers reverses every PGP kind (the properties are props.Kind, which the plan registers).
func Undoers(env Env) step.Registry {
	env = env.withDefaults()
	return step.Registry{
		HomeKind:    HomeUndoer{GPG: env.GPG, GPGConf: env.GPGConf},
		KeyKind:     KeyUndoer{GPG: env.GPG, GPGConf: env.GPGConf},
		SecretsKind: SecretsUndoer{},
	}
}

// Notice is what the admin must be told after setup, or "" when nothing is pending: the
// generated private key and its passphrase are still on the server.
func Notice(cfg config.Config, env Env) string {
	f := Paths(cfg)
	if _, err := os.Stat(f.PrivateKey); err != nil {
		return ""
	}
	return fmt.Sprintf("The export key's private key and passphrase are in %s (%s, %s; root only).\n"+
		"Copy both to the computer you open exports on (`emrkit pgp decrypt --key FILE --passphrase-file FILE`, or gpg),\n"+
		"then delete them from this server: while they are here, anyone who becomes root can read every export.",
		f.Dir, filepath.Base(f.PrivateKey), filepath.Base(f.Passphrase))
}
