package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/emrkit/emrkit/internal/testbin"
)

// chroot is a throwaway Debian 12 root made by scripts/chroot.sh; every command runs in
// private mount, pid and network namespaces, so nothing reaches the host.
type chroot struct {
	t    *testing.T
	root string
}

func newChroot(t *testing.T) *chroot {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the chroot lifecycle test needs root (debootstrap, chroot, namespaces); run `make test` as root")
	}
	root := filepath.Join(t.TempDir(), "root")
	script := filepath.Join(testbin.RepoRoot(t), "scripts", "chroot.sh")
	t.Cleanup(func() {
		if out, err := exec.Command("sh", script, "destroy", root).CombinedOutput(); err != nil {
			t.Errorf("destroy chroot: %v\n%s", err, out)
		}
	})
	if out, err := exec.Command("sh", script, "create", root).CombinedOutput(); err != nil {
		t.Fatalf("create chroot: %v\n%s", err, out)
	}
	return &chroot{t: t, root: root}
}

// run runs argv in the chroot and returns combined output and exit code.
func (c *chroot) run(argv ...string) (string, int) {
	c.t.Helper()
	script := filepath.Join(testbin.RepoRoot(c.t), "scripts", "chroot.sh")
	out, err := exec.Command("sh", append([]string{script, "run", c.root}, argv...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return string(out), 0
}

func (c *chroot) mustRun(argv ...string) string {
	c.t.Helper()
	out, code := c.run(argv...)
	if code != 0 {
		c.t.Fatalf("%v exited %d:\n%s", argv, code, out)
	}
	return out
}

func (c *chroot) path(p string) string { return filepath.Join(c.root, p) }

// treeState describes every file under the host's /etc, /usr, /var, /root and /home — path,
// type, mode, owner and content hash — leaving out dpkg's own database and logs, which record
// that a package came and went.
func (c *chroot) treeState() map[string]string {
	c.t.Helper()
	state := map[string]string{}
	skip := []string{"/var/lib/dpkg", "/var/log", "/var/cache/debconf", "/var/cache/apt", "/tmp", "/proc"}
	for _, top := range []string{"/etc", "/usr", "/var", "/root", "/home"} {
		filepath.WalkDir(c.path(top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := strings.TrimPrefix(p, c.root)
			for _, s := range skip {
				if rel == s || strings.HasPrefix(rel, s+"/") {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
			switch {
			case fi.Mode().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				desc += fmt.Sprintf(" %x", sha256.Sum256(data))
			case fi.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				desc += " -> " + target
			}
			state[rel] = desc
			return nil
		})
	}
	return state
}

func diffStates(before, after map[string]string) []string {
	var diffs []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diffs = append(diffs, "removed "+p)
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	sort.Strings(diffs)
	return diffs
}

const chrootProps = "# oscar.properties of a fixture OSCAR host\n# comments and order must survive\nTOTP=0\nbuttons_on_right=true\n# trailing comment\n"

// TestDpkgInstallPurgeRestoresHost installs the built .deb with real dpkg on a fixture OSCAR
// host, checks TOTP=1 is set with comments kept, then purges and compares the whole host
// with its pre-install baseline.
func TestDpkgInstallPurgeRestoresHost(t *testing.T) {
	deb := buildDeb(t)
	c := newChroot(t)
	props := c.path("/usr/share/tomcat9/oscar.properties")
	must(t, os.MkdirAll(filepath.Dir(props), 0o755))
	must(t, os.WriteFile(props, []byte(chrootProps), 0o640))
	data, err := os.ReadFile(deb)
	must(t, err)
	must(t, os.WriteFile(c.path("/tmp/emrkit.deb"), data, 0o644))
	baseline := c.treeState()
	if len(baseline) < 1000 {
		t.Fatalf("baseline lists only %d files: the snapshot is not reading the chroot", len(baseline))
	}

	out := c.mustRun("dpkg", "-i", "/tmp/emrkit.deb")
	t.Logf("dpkg -i:\n%s", out)
	got, err := os.ReadFile(props)
	must(t, err)
	if want := strings.Replace(chrootProps, "TOTP=0", "TOTP=1", 1); string(got) != want {
		t.Fatalf("oscar.properties after install:\n%s\nwant\n%s", got, want)
	}
	if fi, _ := os.Stat(c.path("/etc/emrkit/emrkit.yaml")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config not written 0600: %v", fi)
	}
	if out, code := c.run("emrkit", "status"); code != 0 {
		t.Fatalf("emrkit status exited %d:\n%s", code, out)
	}
	// Re-running the configure step converges without changes.
	out = c.mustRun("dpkg-reconfigure", "-fnoninteractive", "emrkit")
	if !strings.Contains(out, "nothing to change") {
		t.Fatalf("re-run of postinst changed something:\n%s", out)
	}

	out = c.mustRun("dpkg", "--purge", "emrkit")
	t.Logf("dpkg --purge:\n%s", out)
	got, err = os.ReadFile(props)
	must(t, err)
	if string(got) != chrootProps {
		t.Fatalf("oscar.properties after purge differs:\n%s", got)
	}
	if diffs := diffStates(baseline, c.treeState()); len(diffs) > 0 {
		t.Fatalf("host differs from its baseline after purge:\n%s", strings.Join(diffs, "\n"))
	}
}
