// Package emrkit carries into the binaries the files of the source tree they must know at
// build time: the release changelog, so that a plain `go build` or `go install` knows which
// release it is (pkg/release reads it).
package emrkit

import _ "embed"

// Changelog is debian/changelog.yaml, newest release first.
//
//go:embed debian/changelog.yaml
var Changelog []byte
