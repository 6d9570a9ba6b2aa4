package release

import (
	"strings"
	"testing"

	"github.com/emrkit/emrkit"
	"github.com/emrkit/emrkit/pkg/debversion"
)

func TestStampedVersionWins(t *testing.T) {
	b, err := Resolve("0.2.0-1", emrkit.Changelog)
	if err != nil || b.Version != "0.2.0-1" || b.Dev {
		t.Fatalf("%+v %v", b, err)
	}
	if b.String() != "0.2.0-1" {
		t.Fatalf("String %q", b.String())
	}
}

// A development build plans the newest release of the tree: every step whose since is that
// release, and nothing it journals is newer than the packaged release.
func TestDevelopmentBuildIsTheNewestRelease(t *testing.T) {
	newest, err := Newest(emrkit.Changelog)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve("", emrkit.Changelog)
	if err != nil || !b.Dev {
		t.Fatalf("%+v %v", b, err)
	}
	if ok, _ := debversion.AtMost(newest, b.Version); !ok {
		t.Fatalf("%s does not plan the steps of %s", b.Version, newest)
	}
	if ok, _ := debversion.AtMost(newest+"-1", b.Version); ok {
		t.Fatalf("%s is not older than the packaged %s-1", b.Version, newest)
	}
	if !strings.Contains(b.String(), "development build") {
		t.Fatalf("String %q does not say it is a development build", b.String())
	}
}

func TestCannotTellRefuses(t *testing.T) {
	for name, c := range map[string]struct{ stamp, changelog string }{
		"bad stamp":      {"not a version!", "- semver: 0.4.0\n"},
		"empty":          {"", ""},
		"not yaml":       {"", "{{{"},
		"no semver":      {"", "- date: 2026-01-01\n"},
		"bad semver":     {"", "- semver: x y\n"},
		"with revision":  {"", "- semver: 0.4.0-1\n"},
		"not a sequence": {"", "semver: 0.4.0\n"},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Resolve(c.stamp, []byte(c.changelog))
			if err == nil {
				t.Fatalf("resolved %+v", b)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "rebuild emrkit with `make`") {
				t.Fatalf("error is not one line naming the fix: %q", msg)
			}
		})
	}
}
