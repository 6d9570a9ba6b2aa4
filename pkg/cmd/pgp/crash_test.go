package pgp_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/testbin"
	"github.com/emrkit/emrkit/pkg/fault"
	"github.com/emrkit/emrkit/pkg/journal"
)

// faultBinary builds testdata/emrkit (the PGP commands in emrkit's tree) with fault injection.
func faultBinary(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "emrkit-fault")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "faultinject", "-o", out, "./pkg/cmd/pgp/testdata/emrkit")
	cmd.Dir = testbin.RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (faultinject): %v\n%s", err, b)
	}
	return out
}

// proc runs the fault binary; fault is EMRKIT_FAULT ("" none, "list", or N).
func (c *cli) proc(bin, fault string, args ...string) (string, int) {
	c.t.Helper()
	cmd := exec.Command(bin, append([]string{"--config", c.config}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "EMRKIT_TEST_BIN=" + bin, "EMRKIT_TEST_ALGO=" + string(c.env.Algorithm)}
	if fault != "" {
		cmd.Env = append(cmd.Env, "EMRKIT_FAULT="+fault)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode() // -1 when killed
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), code
}

func (c *cli) setMode(mode string) {
	c.cfg.PGP.Mode = mode
	c.writeConfig()
}

// TestCrashAtEveryPoint kills `pgp setup`, and the undo that pgp.mode none runs, at every
// journal point in turn (SIGKILL, as a power cut would): each time the next run converges,
// exits 0, the self-test passes, and the final undo gives the properties back byte for
// byte with nothing left behind.
func TestCrashAtEveryPoint(t *testing.T) {
	for _, mode := range []string{"generate", "symmetric"} {
		t.Run(mode, func(t *testing.T) {
			c := newCLI(t, mode)
			bin := faultBinary(t, c.base)
			out, code := c.proc(bin, "list", "pgp", "setup")
			points := strings.Count(out, "fault point ")
			if code != 0 || points < 10 {
				t.Fatalf("listing fault points: exit %d, %d points\n%s", code, points, out)
			}
			c.setMode("none")
			out, code = c.proc(bin, "list", "pgp", "setup")
			undoPoints := strings.Count(out, "fault point ")
			if code != 0 || undoPoints < 10 {
				t.Fatalf("listing undo fault points: exit %d, %d points\n%s", code, undoPoints, out)
			}
			c.restored()
			t.Logf("%s: %d points in setup, %d in undo", mode, points, undoPoints)

			for n := 1; n <= points; n++ {
				c.setMode(mode)
				if out, code := c.proc(bin, fmt.Sprint(n), "pgp", "setup"); code != -1 {
					t.Fatalf("setup with %s=%d: exit %d, want killed\n%s", fault.Env, n, code, out)
				}
				if out, code := c.proc(bin, "", "pgp", "setup"); code != 0 {
					t.Fatalf("setup after a crash at point %d: exit %d\n%s", n, code, out)
				}
				if out, code := c.proc(bin, "", "pgp", "selftest"); code != 0 {
					t.Fatalf("selftest after a crash at point %d: exit %d\n%s", n, code, out)
				}
				c.setMode("none")
				if out, code := c.proc(bin, "", "pgp", "setup"); code != 0 {
					t.Fatalf("undo after a crash at point %d: exit %d\n%s", n, code, out)
				}
				c.restored()
				c.noPending(n)
			}
			for n := 1; n <= undoPoints; n++ {
				c.setMode(mode)
				if out, code := c.proc(bin, "", "pgp", "setup"); code != 0 {
					t.Fatalf("setup: exit %d\n%s", code, out)
				}
				c.setMode("none")
				if out, code := c.proc(bin, fmt.Sprint(n), "pgp", "setup"); code != -1 {
					t.Fatalf("undo with %s=%d: exit %d, want killed\n%s", fault.Env, n, code, out)
				}
				if out, code := c.proc(bin, "", "pgp", "setup"); code != 0 {
					t.Fatalf("undo after a crash at point %d: exit %d\n%s", n, code, out)
				}
				c.restored()
				c.noPending(n)
			}
		})
	}
}

func (c *cli) noPending(n int) {
	c.t.Helper()
	es, err := journal.Read(c.cfg.Paths.StateDir)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, e := range es {
		if e.State == journal.Pending || e.State == journal.Done {
			c.t.Errorf("after the crash at point %d and undo, %s is still %s", n, e.ID, e.State)
		}
	}
}
