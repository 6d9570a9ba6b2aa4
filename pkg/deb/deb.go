// Package deb owns building emrkit's .deb through the nfpm Go library. It fills nfpm.yaml's
// ${...} placeholders from Options (never from the environment), ships only the changelog
// entries up to the version being built, and pins every timestamp so equal inputs give a
// byte-identical package. Only the build entry point links it: nfpm pulls in rpm, apk and
// arch packagers that have no place on a clinic server.
package deb

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/goreleaser/chglog"
	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"go.yaml.in/yaml/v3"

	"github.com/emrkit/emrkit/pkg/debversion"
)

// Options are the build's inputs.
type Options struct {
	Spec      string    // nfpm.yaml
	Changelog string    // chglog YAML, newest first
	Version   string    // upstream version, e.g. 0.1.0
	Release   string    // Debian revision, e.g. 1
	Arch      string    // Debian architecture, e.g. amd64
	Binary    string    // the emrkit binary to ship
	ManDir    string    // directory of *.1.gz man pages
	MTime     time.Time // every timestamp in the package (SOURCE_DATE_EPOCH)
	OutDir    string
}

// Build writes OutDir/emrkit_<version>-<release>_<arch>.deb and returns its path.
func Build(o Options) (string, error) {
	work, err := os.MkdirTemp("", "emrkit-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	changelog := filepath.Join(work, "changelog.yaml")
	if err := changelogUpTo(o.Changelog, o.Version, changelog); err != nil {
		return "", err
	}
	vars := map[string]string{
		"ARCH": o.Arch, "VERSION": o.Version, "RELEASE": o.Release,
		"BINARY": o.Binary, "MANDIR": o.ManDir,
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(o.Spec, func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", o.Spec, err)
	}
	// Package() mutates the Info, so each build starts from a fresh one.
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("%s: %w", o.Spec, err)
	}
	info.MTime = o.MTime.UTC()
	info.Changelog = changelog
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("%s: %w", o.Spec, err)
	}
	packager, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := packager.Package(info, &buf); err != nil {
		return "", fmt.Errorf("package: %w", err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, fmt.Sprintf("emrkit_%s-%s_%s.deb", o.Version, o.Release, o.Arch))
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return out, nil
}

// changelogUpTo writes the entries of src whose version is at most version, so an older
// release rebuilt from this tree does not announce changes it does not have.
func changelogUpTo(src, version, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("changelog: %w", err)
	}
	entries, err := chglog.Parse(src)
	if err != nil {
		return err
	}
	kept := slices.DeleteFunc(slices.Clone(entries), func(e *chglog.ChangeLog) bool {
		ok, err := debversion.AtMost(e.Semver, version)
		return err != nil || !ok
	})
	if len(kept) == 0 || kept[0].Semver != version {
		return fmt.Errorf("changelog %s has no entry for %s; add one (newest first)", src, version)
	}
	data, err := yaml.Marshal(kept)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// Gzip compresses data with no name or timestamp in the header, as reproducible builds need.
func Gzip(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
