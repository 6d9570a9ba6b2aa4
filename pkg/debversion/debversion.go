// Package debversion compares package versions in Debian order (epochs, ~ before anything,
// numeric runs compared as numbers), through pault.ag/go/debian/version, which matched
// dpkg --compare-versions where hand-rolled and other libraries did not.
package debversion

import (
	"fmt"

	"pault.ag/go/debian/version"
)

// Compare returns -1, 0 or 1 as a is older than, equal to or newer than b.
func Compare(a, b string) (int, error) {
	va, err := Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := Parse(b)
	if err != nil {
		return 0, err
	}
	switch c := version.Compare(va, vb); {
	case c < 0:
		return -1, nil
	case c > 0:
		return 1, nil
	}
	return 0, nil
}

// Parse validates v as a Debian version.
func Parse(v string) (version.Version, error) {
	pv, err := version.Parse(v)
	if err != nil {
		return pv, fmt.Errorf("%q is not a Debian version (e.g. 0.2.0 or 0.2.0-1): %w", v, err)
	}
	return pv, nil
}

// AtMost reports whether a <= b.
func AtMost(a, b string) (bool, error) {
	c, err := Compare(a, b)
	return c <= 0, err
}
