package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// faultHost is a fixture OSCAR host in its own chroot with both releases, built with
// TAGS=faultinject so EMRKIT_FAULT=N makes emrkit SIGKILL itself at the N-th journal point
// of a run (counted over all its emrkit processes).
type faultHost struct {
	*chroot
	in map[string]string
	// assertBaseline fails unless database, firewall and files equal the pre-install host.
	assertBaseline func(when string)
}

func newFaultHost(t *testing.T, debs map[string]string) *faultHost {
	c := newChroot(t)
	c.oscarHost(chrootProps)
	in := c.installDebs(debs)
	must(t, os.WriteFile(c.path("/tmp/preseed"), []byte("emrkit emrkit/migrations multiselect middle-names, roster-enrolled-to\n"), 0o644))
	baseUFW := c.mustRun("ufw", "status", "verbose")
	baseDB := c.dbDump()
	baseline := c.treeState()
	return &faultHost{chroot: c, in: in, assertBaseline: func(when string) {
		t.Helper()
		if c.dbDump() != baseDB || c.mustRun("ufw", "status", "verbose") != baseUFW {
			t.Fatalf("%s: database or firewall differ from the baseline", when)
		}
		assertOnlyBackupsLeft(t, diffStates(baseline, c.treeState()))
	}}
}

// install is the command installing release name with the data migrations chosen: the
// answer is given again each time, as a purge forgets it.
func (h *faultHost) install(name string) []string {
	return []string{"sh", "-c", "debconf-set-selections /tmp/preseed && exec dpkg -i " + h.in[name]}
}

// points runs a dpkg command listing the fault points every emrkit process reaches.
func (h *faultHost) points(argv ...string) int {
	h.t.Helper()
	out := h.mustRun(armed("list", argv)...)
	return strings.Count(out, "fault point ")
}

// armed is argv with the fault injector set to fault, counting the points of every emrkit
// process of the run in one file (fault.CounterEnv), which is gone again afterwards.
func armed(fault string, argv []string) []string {
	const counter = "/tmp/emrkit-fault-counter"
	return append([]string{"sh", "-c", `rm -f ` + counter + `; env EMRKIT_FAULT="$0" EMRKIT_FAULT_COUNTER=` + counter + ` "$@"; rc=$?; rm -f ` + counter + `; exit $rc`, fault}, argv...)
}

func (h *faultHost) killAt(n int, argv ...string) {
	h.t.Helper()
	out, code := h.run(armed(strconv.Itoa(n), argv)...)
	if code == 0 && !strings.Contains(out, "fault: SIGKILL") {
		h.t.Fatalf("%v with EMRKIT_FAULT=%d was not killed:\n%s", argv, n, out)
	}
}

// TestSIGKILLAtEveryJournalPointUnderDpkg kills emrkit with SIGKILL at every journal point of
// an install, an upgrade, a downgrade and a purge in turn, recovers the way an admin would
// (`dpkg --configure -a`, or the purge again) and requires the same host as the
// uninterrupted run. The four run in parallel, each in its own chroot.
func TestSIGKILLAtEveryJournalPointUnderDpkg(t *testing.T) {
	debs := map[string]string{
		"old": buildDeb(t, "VERSION=0.1.0", "TAGS=faultinject"),
		"new": buildDeb(t, "TAGS=faultinject"),
	}
	t.Run("install", func(t *testing.T) {
		t.Parallel()
		h := newFaultHost(t, debs)
		n := h.points(h.install("new")...)
		want := h.hostState()
		h.mustRun("dpkg", "--purge", "emrkit")
		t.Logf("install: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.killAt(i, h.install("new")...)
			h.mustRun("dpkg", "--configure", "-a")
			if got := h.hostState(); got != want {
				t.Fatalf("install killed at point %d converged differently:\n%s", i, lineDiff(want, got))
			}
			h.mustRun("dpkg", "--purge", "emrkit")
			h.assertBaseline(fmt.Sprintf("purge after install killed at %d", i))
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		t.Parallel()
		h := newFaultHost(t, debs)
		h.mustRun(h.install("new")...)
		want := h.hostState() // a fresh install of the new release
		h.mustRun("dpkg", "--purge", "emrkit")
		h.mustRun(h.install("old")...)
		n := h.points(h.install("new")...)
		if got := h.hostState(); got != want {
			t.Fatalf("upgrade differs from a fresh install of the new release:\n%s", lineDiff(want, got))
		}
		h.mustRun("dpkg", "--purge", "emrkit")
		t.Logf("upgrade: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.mustRun(h.install("old")...)
			h.killAt(i, h.install("new")...)
			h.mustRun("dpkg", "--configure", "-a")
			if got := h.hostState(); got != want {
				t.Fatalf("upgrade killed at point %d converged differently:\n%s", i, lineDiff(want, got))
			}
			h.mustRun("dpkg", "--purge", "emrkit")
		}
	})
	t.Run("downgrade", func(t *testing.T) {
		t.Parallel()
		h := newFaultHost(t, debs)
		h.mustRun(h.install("old")...)
		want := h.hostState() // a fresh install of the old release
		h.mustRun(h.install("new")...)
		n := h.points(h.install("old")...)
		if got := h.hostState(); got != want {
			t.Fatalf("downgrade differs from a fresh install of the old release:\n%s", lineDiff(want, got))
		}
		h.mustRun("dpkg", "--purge", "emrkit")
		t.Logf("downgrade: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.mustRun(h.install("new")...)
			h.killAt(i, h.install("old")...)
			// dpkg may have gone on with the old release's scripts; either way, configure
			// converges, and if the old release is not in place yet, installing it again does.
			h.run("dpkg", "--configure", "-a")
			if dpkgVersion(h.chroot) != "0.1.0-1 ii" {
				h.mustRun(h.install("old")...)
			}
			if got := h.hostState(); got != want {
				t.Fatalf("downgrade killed at point %d converged differently:\n%s", i, lineDiff(want, got))
			}
			h.mustRun("dpkg", "--purge", "emrkit")
		}
	})
	t.Run("purge", func(t *testing.T) {
		t.Parallel()
		h := newFaultHost(t, debs)
		h.mustRun(h.install("new")...)
		n := h.points("dpkg", "--purge", "emrkit")
		h.assertBaseline("uninterrupted purge")
		t.Logf("purge: %d fault points", n)
		for i := 1; i <= n; i++ {
			h.mustRun(h.install("new")...)
			h.killAt(i, "dpkg", "--purge", "emrkit")
			h.mustRun("dpkg", "--purge", "emrkit")
			h.assertBaseline(fmt.Sprintf("purge killed at point %d", i))
		}
	})
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
