// Package release owns what a binary knows of its own version. A package build (make, the
// .deb) stamps the Debian version in at link time; a development build (`go build`, `go
// install`) has no stamp and takes the newest release the source tree's changelog describes,
// so it plans what that release plans instead of nothing.
package release

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/emrkit/emrkit/pkg/debversion"
)

// devRevision is a development build's Debian revision: "-1~dev" sorts after the upstream
// version alone (the steps' since) and before the packaged "-1", so a development binary
// plans every step of that release, and what it journals is never newer than the release.
const devRevision = "-1~dev"

// Build is the identity of one binary.
type Build struct {
	// Version is the Debian version the binary plans and journals as, e.g. "0.4.0-1".
	Version string
	// Dev is true for a binary built without a version stamp (go build, go install).
	Dev bool
}

// String is the version as `emrkit version` prints it.
func (b Build) String() string {
	if b.Dev {
		return b.Version + " (development build from the source tree, not a release package; build the package with `make deb`)"
	}
	return b.Version
}

// Resolve returns the binary's identity from its link-time stamp ("" when there is none) and
// the embedded changelog. An error means the binary cannot tell what it is, and must refuse
// to run rather than plan the wrong steps.
func Resolve(stamped string, changelog []byte) (Build, error) {
	const rebuild = "rebuild emrkit with `make` from a source tree whose debian/changelog.yaml names its releases"
	if stamped != "" {
		if _, err := debversion.Parse(stamped); err != nil {
			return Build{}, fmt.Errorf("this emrkit was stamped with version %q, which is not a Debian version; %s", stamped, rebuild)
		}
		return Build{Version: stamped}, nil
	}
	newest, err := Newest(changelog)
	if err != nil {
		return Build{}, fmt.Errorf("this emrkit cannot tell which release it is (%v); %s", err, rebuild)
	}
	return Build{Version: newest + devRevision, Dev: true}, nil
}

// Newest returns the upstream version of the changelog's first (newest) entry.
func Newest(changelog []byte) (string, error) {
	var entries []struct {
		Semver string `yaml:"semver"`
	}
	if err := yaml.Unmarshal(changelog, &entries); err != nil {
		return "", errors.New("changelog is not a YAML list of releases")
	}
	if len(entries) == 0 || entries[0].Semver == "" {
		return "", errors.New("changelog names no release")
	}
	v := entries[0].Semver
	pv, err := debversion.Parse(v)
	if err != nil {
		return "", fmt.Errorf("changelog: %w", err)
	}
	if pv.Revision != "" {
		return "", fmt.Errorf("changelog: release %q carries a Debian revision; name the upstream version only", v)
	}
	return v, nil
}
