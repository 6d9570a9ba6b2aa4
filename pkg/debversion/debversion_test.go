package debversion

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

func TestKnownOrder(t *testing.T) {
	ordered := []string{"0.1.0~rc1", "0.1.0", "0.1.0-1", "0.1.0-1+b1", "0.1.1", "0.2.0", "0.10.0", "1:0.0.1"}
	for i := 0; i+1 < len(ordered); i++ {
		if c, err := Compare(ordered[i], ordered[i+1]); err != nil || c != -1 {
			t.Errorf("%s vs %s: %d %v", ordered[i], ordered[i+1], c, err)
		}
	}
	if _, err := Compare("abc def", "1"); err == nil {
		t.Error("invalid version accepted")
	}
}

// randomVersion makes versions that exercise epochs, tildes, letters, revisions and long
// numeric runs.
func randomVersion(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(6) == 0 {
		fmt.Fprintf(&b, "%d:", r.IntN(3))
	}
	fmt.Fprintf(&b, "%d", r.IntN(12))
	for range r.IntN(4) {
		switch r.IntN(7) {
		case 0:
			b.WriteString("~")
			b.WriteString([]string{"rc", "beta", "", "dev"}[r.IntN(4)])
		case 1:
			b.WriteString("+")
			b.WriteString([]string{"b", "deb12u", "git"}[r.IntN(3)])
		case 2:
			fmt.Fprintf(&b, ".%d", r.Int64N(1e12))
		default:
			fmt.Fprintf(&b, ".%d", r.IntN(20))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "%d", r.IntN(10))
		}
	}
	if r.IntN(2) == 0 {
		fmt.Fprintf(&b, "-%d", r.IntN(5))
		if r.IntN(3) == 0 {
			b.WriteString("~bpo1")
		}
	}
	return b.String()
}

func dpkgSays(t *testing.T, a, op, b string) bool {
	err := exec.Command("dpkg", "--compare-versions", a, op, b).Run()
	if err == nil {
		return true
	}
	if e, ok := err.(*exec.ExitError); ok && e.ExitCode() == 1 {
		return false
	}
	t.Fatalf("dpkg --compare-versions %s %s %s: %v", a, op, b, err)
	return false
}

func TestMatchesDpkgCompareVersions(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg not found: this test compares with the real dpkg; run on Debian")
	}
	r := rand.New(rand.NewPCG(2026, 11))
	const pairs = 400
	for range pairs {
		a, b := randomVersion(r), randomVersion(r)
		if r.IntN(10) == 0 {
			b = a
		}
		c, err := Compare(a, b)
		if err != nil {
			t.Fatalf("%s %s: %v", a, b, err)
		}
		var want int
		switch {
		case dpkgSays(t, a, "lt", b):
			want = -1
		case dpkgSays(t, a, "gt", b):
			want = 1
		}
		if c != want {
			t.Errorf("Compare(%q, %q) = %d, dpkg says %d", a, b, c, want)
		}
	}
}
