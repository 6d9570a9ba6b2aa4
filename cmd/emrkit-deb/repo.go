package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/emrkit/emrkit/pkg/aptrepo"
	"github.com/emrkit/emrkit/pkg/fsutil"
)

// repoMain is `emrkit-deb repo [flags] DEB...`: the signed APT repository of the .debs given.
func repoMain(args []string) int {
	flags := flag.NewFlagSet("emrkit-deb repo", flag.ContinueOnError)
	o := aptrepo.Options{}
	var key, pass string
	flags.StringVar(&o.OutDir, "out", "dist/repo", "repository directory (replaced)")
	flags.StringVar(&key, "key", "", "armored private signing key (required; `emrkit-deb repo-key` makes one)")
	flags.StringVar(&pass, "passphrase-file", "", "file whose first line unlocks the key")
	flags.StringVar(&o.Origin, "origin", "emrkit", "Release Origin (never change it once servers use the repository)")
	flags.StringVar(&o.Label, "label", "emrkit", "Release Label (never change it)")
	flags.StringVar(&o.Suite, "suite", "bookworm", "suite (dists/SUITE)")
	flags.StringVar(&o.Codename, "codename", "bookworm", "Release Codename (never change it)")
	flags.StringVar(&o.Component, "component", "main", "component")
	flags.DurationVar(&o.ValidFor, "valid-for", 30*24*time.Hour, "Valid-Until is the Date plus this; publish again before it passes")
	flags.StringVar(&o.URI, "uri", "", "where servers fetch the repository, for emrkit.sources")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	o.Debs = flags.Args()
	if key == "" || len(o.Debs) == 0 {
		fmt.Fprintln(os.Stderr, "emrkit-deb repo: give --key and at least one .deb")
		return 2
	}
	date, ok := sourceDate()
	if !ok {
		return 2
	}
	o.Date = date
	var err error
	if o.Signer, err = aptrepo.LoadSigner(key, pass); err == nil {
		err = aptrepo.Build(o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "emrkit-deb repo: %v\n", err)
		return 1
	}
	fmt.Println(o.OutDir)
	return 0
}

// repoKeyMain is `emrkit-deb repo-key --out DIR`: a new signing key (signing-key.asc, locked
// with the passphrase in passphrase, both 0600) and its public half (signing-key.pub.asc).
// It never replaces a key: servers trust the one they have.
func repoKeyMain(args []string) int {
	flags := flag.NewFlagSet("emrkit-deb repo-key", flag.ContinueOnError)
	out := flags.String("out", "dist/repo-key", "directory for the key files")
	uid := flags.String("uid", "emrkit repository signing key <root@localhost>", "the key's user id")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if err := repoKey(*out, *uid); err != nil {
		fmt.Fprintf(os.Stderr, "emrkit-deb repo-key: %v\n", err)
		return 1
	}
	fmt.Println(filepath.Join(*out, "signing-key.asc"))
	return 0
}

func repoKey(dir, uid string) error {
	keyFile := filepath.Join(dir, "signing-key.asc")
	if _, err := os.Stat(keyFile); err == nil {
		return fmt.Errorf("%s exists; emrkit never replaces a signing key servers trust", keyFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ks, err := aptrepo.NewKey(uid)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, f := range map[string]struct {
		data []byte
		mode os.FileMode
	}{"passphrase": {ks.Passphrase, 0o600}, "signing-key.pub.asc": {ks.Public, 0o644}, "signing-key.asc": {ks.Private, 0o600}} {
		if err := fsutil.WriteAtomic(filepath.Join(dir, name), f.data, f.mode, nil); err != nil {
			return err
		}
	}
	return nil
}
