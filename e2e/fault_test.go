package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestSIGKILLAtEveryJournalPointUnderDpkg kills emrkit with SIGKILL at every journal point of
// an install, an upgrade, a downgrade and a purge in turn (a faultinject build of the package
// honours EMRKIT_FAULT=N), recovers the way an admin would (`dpkg --configure -a`, or the
// purge again) and requires the same host as the uninterrupted run.
func TestSIGKILLAtEveryJournalPointUnderDpkg(t *testing.T) {
	debs := map[string]string{
		"old": buildDeb(t, "VERSION=0.1.0", "TAGS=faultinject"),
		"new": buildDeb(t, "TAGS=faultinject"),
	}
	c := newChroot(t)
	c.oscarHost(chrootProps)
	in := c.installDebs(debs)
	baseUFW := c.mustRun("ufw", "status", "verbose")
	baseDB := c.dbDump()
	baseline := c.treeState()
	assertBaseline := func(when string) {
		t.Helper()
		if c.dbDump() != baseDB || c.mustRun("ufw", "status", "verbose") != baseUFW {
			t.Fatalf("%s: database or firewall differ from the baseline", when)
		}
		assertOnlyBackupsLeft(t, diffStates(baseline, c.treeState()))
	}
	// points runs a dpkg command listing the fault points every emrkit process reaches.
	points := func(argv ...string) int {
		t.Helper()
		out := c.mustRun(append([]string{"env", "EMRKIT_FAULT=list"}, argv...)...)
		return strings.Count(out, "fault point ")
	}
	killAt := func(n int, argv ...string) {
		t.Helper()
		out, code := c.run(append([]string{"env", fmt.Sprintf("EMRKIT_FAULT=%d", n)}, argv...)...)
		if code == 0 && !strings.Contains(out, "fault: SIGKILL") {
			t.Fatalf("%v with EMRKIT_FAULT=%d was not killed:\n%s", argv, n, out)
		}
	}

	// Reference states of the uninterrupted runs.
	nInstall := points("dpkg", "-i", in["new"])
	installed := c.hostState()
	nPurge := points("dpkg", "--purge", "emrkit")
	assertBaseline("uninterrupted purge")
	c.mustRun("dpkg", "-i", in["old"])
	old := c.hostState()
	nUpgrade := points("dpkg", "-i", in["new"])
	if got := c.hostState(); got != installed {
		t.Fatalf("upgrade differs from a fresh install of the new release:\n%s", lineDiff(installed, got))
	}
	nDowngrade := points("dpkg", "-i", in["old"])
	if got := c.hostState(); got != old {
		t.Fatalf("downgrade differs from a fresh install of the old release:\n%s", lineDiff(old, got))
	}
	c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("fault points: install %d, upgrade %d, downgrade %d, purge %d", nInstall, nUpgrade, nDowngrade, nPurge)
	if nInstall < 10 || nUpgrade < 4 || nDowngrade < 4 || nPurge < 10 {
		t.Fatal("too few fault points: is the package built with TAGS=faultinject?")
	}

	for n := 1; n <= nInstall; n++ {
		killAt(n, "dpkg", "-i", in["new"])
		c.mustRun("dpkg", "--configure", "-a")
		if got := c.hostState(); got != installed {
			t.Fatalf("install killed at point %d converged differently:\n%s", n, lineDiff(installed, got))
		}
		c.mustRun("dpkg", "--purge", "emrkit")
		assertBaseline(fmt.Sprintf("purge after install killed at %d", n))
	}
	for n := 1; n <= nUpgrade; n++ {
		c.mustRun("dpkg", "-i", in["old"])
		killAt(n, "dpkg", "-i", in["new"])
		c.mustRun("dpkg", "--configure", "-a")
		if got := c.hostState(); got != installed {
			t.Fatalf("upgrade killed at point %d converged differently:\n%s", n, lineDiff(installed, got))
		}
		c.mustRun("dpkg", "--purge", "emrkit")
	}
	for n := 1; n <= nDowngrade; n++ {
		c.mustRun("dpkg", "-i", in["new"])
		killAt(n, "dpkg", "-i", in["old"])
		// dpkg may have gone on with the old release's scripts; either way, configure
		// converges, and if the old release is not in place yet, installing it again does.
		c.run("dpkg", "--configure", "-a")
		if dpkgVersion(c) != "0.1.0-1 ii" {
			c.mustRun("dpkg", "-i", in["old"])
		}
		if got := c.hostState(); got != old {
			t.Fatalf("downgrade killed at point %d converged differently:\n%s", n, lineDiff(old, got))
		}
		c.mustRun("dpkg", "--purge", "emrkit")
	}
	for n := 1; n <= nPurge; n++ {
		c.mustRun("dpkg", "-i", in["new"])
		killAt(n, "dpkg", "--purge", "emrkit")
		c.mustRun("dpkg", "--purge", "emrkit")
		assertBaseline(fmt.Sprintf("purge killed at point %d", n))
	}
}

// lineDiff lists the lines only one of a and b has, for readable failures.
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		if n > 0 {
			out = append(out, "- "+l)
		} else if n < 0 {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
