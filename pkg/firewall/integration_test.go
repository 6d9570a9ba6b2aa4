package firewall_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/journal"
)

// TestNamespaceFirewall applies and reverts emrkit's firewall with the real ufw and real
// traffic, inside network namespaces with a private /etc/ufw, never in the test host's
// namespace. Its log holds the timing and the connection matrix of each scenario.
func TestNamespaceFirewall(t *testing.T) {
	requireTools(t)
	sweepStaleLabs(t)
	before := hostFingerprint(t)
	t.Cleanup(func() {
		if diff := diffSnapshots(before, hostFingerprint(t)); len(diff) > 0 {
			t.Errorf("THE TEST HOST CHANGED (must never happen): %v", diff)
		}
	})
	dir := t.TempDir()
	bin := filepath.Join(dir, "fwtest")
	build := exec.Command("go", "build", "-o", bin, "./internal/fwtest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: one scenario runs it in a bare chroot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build fwtest: %v\n%s", err, out)
	}
	nsrun, err := filepath.Abs("testdata/nsrun.sh")
	if err != nil {
		t.Fatal(err)
	}
	hostNet, err1 := os.Readlink("/proc/self/ns/net")
	hostMnt, err2 := os.Readlink("/proc/self/ns/mnt")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	mk := func(t *testing.T, n int) *lab { return newLab(t, n, bin, nsrun, hostNet, hostMnt) }

	t.Run("defaults-ssh22", func(t *testing.T) { t.Parallel(); scenarioDefaults(t, mk(t, 1)) })
	t.Run("admin-rules-ssh2222", func(t *testing.T) { t.Parallel(); scenarioAdmin(t, mk(t, 2)) })
	t.Run("bad-input", func(t *testing.T) { t.Parallel(); scenarioBadInput(t, mk(t, 3)) })
	t.Run("ufw-missing-iptables-unusable", func(t *testing.T) { t.Parallel(); scenarioBrokenTools(t, mk(t, 4)) })
	t.Run("openemr-allow-http", func(t *testing.T) { t.Parallel(); scenarioOpenEMR(t, mk(t, 5)) })
}

// scenarioOpenEMR: the OpenEMR profile opens 443 and SSH only, and 80 with allow_http
// (certbot, the redirect to HTTPS); undo closes them again, 80 first.
func scenarioOpenEMR(t *testing.T, l *lab) {
	ports := []int{22, 80, 443, 8443, 3306}
	for _, p := range ports {
		l.listen(p, false)
	}
	l.env = []string{"SSH_CONNECTION=10.213.5.2 50022 10.213.5.1 22"}
	files, tuples, state := l.files(), l.tuples(), l.ufwState()
	m := newMatrix(ports...)
	m.record("baseline", l.probe(ports))
	l.writeProfileConfig("openemr", "{enable: true, https_port: 443, deny: [3306], allow_http: true}")
	l.ok(l.emrkit(runOpts{}, "apply"), "apply")
	m.record("after apply", l.probe(ports))
	l.writeProfileConfig("openemr", "{enable: true, https_port: 443, deny: [3306]}")
	l.ok(l.emrkit(runOpts{}, "apply"), "apply without allow_http")
	m.record("allow_http off", l.probe(ports))
	l.ok(l.emrkit(runOpts{}, "revert"), "revert")
	m.record("after undo", l.probe(ports))
	t.Logf("connection matrix (OpenEMR, allow_http, then off):\n%s", m)
	m.expect(t, "baseline", ports...)
	m.expect(t, "after apply", 22, 80, 443)
	m.expect(t, "allow_http off", 22, 443)
	m.expect(t, "after undo", ports...)
	sameAsBaseline(t, l, files, tuples, state, false)
}

// emrkitLines counts the rules carrying emrkit's comment in `ufw show added`.
func emrkitLines(added string) []string {
	var out []string
	for _, l := range strings.Split(added, "\n") {
		if strings.HasSuffix(l, "comment 'emrkit'") {
			out = append(out, l)
		}
	}
	return out
}

// sameAsBaseline checks that after undo the private ufw state is the baseline. exact=false
// allows one difference: ufw rewrites user.rules/user6.rules in its own full layout the first
// time it changes a rule, so a package-fresh file comes back equivalent, not byte-identical;
// ufw's own record of the rules (tuples and chain rules) must still match.
func sameAsBaseline(t *testing.T, l *lab, files map[string]string, tuples []string, state string, exact bool) {
	t.Helper()
	if got := l.ufwState(); got != state {
		t.Errorf("ufw status/show added after undo differ from the baseline:\n--- baseline\n%s\n--- now\n%s", state, got)
	}
	diff := diffSnapshots(files, l.files())
	if !exact {
		diff = slices.DeleteFunc(diff, func(f string) bool {
			return f == "etc/ufw/user.rules" || f == "etc/ufw/user6.rules"
		})
	}
	if len(diff) > 0 {
		t.Errorf("private /etc/ufw differs from the baseline after undo: %v", diff)
	}
	if got := l.tuples(); !slices.Equal(got, tuples) {
		t.Errorf("ufw's rule records differ after undo:\n%q\nwant\n%q", got, tuples)
	}
}

func entries(t *testing.T, l *lab) []journal.Entry {
	t.Helper()
	es, err := journal.Read(l.state)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// scenarioDefaults: a fresh ufw (disabled), SSH on 22 used by the current session.
func scenarioDefaults(t *testing.T, l *lab) {
	ports := []int{22, 8443, 3306, 8080}
	for _, p := range ports {
		l.listen(p, false)
	}
	l.env = []string{"SSH_CONNECTION=10.213.1.2 50022 10.213.1.1 22"}
	files, tuples, state := l.files(), l.tuples(), l.ufwState()
	m := newMatrix(ports...)
	m.record("baseline", l.probe(ports))

	// Principle 7: in a real chroot, without EMRKIT_CHROOT_FIREWALL=1, nothing is touched.
	r := l.emrkitInChroot("apply")
	if r.code != 3 || !strings.Contains(r.stdout, "running in a chroot") {
		t.Errorf("apply in a chroot without EMRKIT_CHROOT_FIREWALL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if diff := diffSnapshots(files, l.files()); len(diff) > 0 || l.ufwState() != state {
		t.Fatalf("a deferred apply changed ufw: %v", diff)
	}

	dry := l.ok(l.emrkit(runOpts{}, "apply", "--dry-run"), "apply --dry-run")
	for _, want := range []string{
		"ufw allow proto tcp from any to any port 22 comment 'emrkit'",
		"ufw allow proto tcp from any to any port 8443 comment 'emrkit'",
		"ufw deny proto tcp from any to any port 3306 comment 'emrkit'",
		"ufw deny proto tcp from any to any port 8080 comment 'emrkit'",
		"ufw --force enable",
	} {
		if !strings.Contains(dry.stdout, want) {
			t.Errorf("apply --dry-run does not show %q:\n%s", want, dry.stdout)
		}
	}
	if diff := diffSnapshots(files, l.files()); len(diff) > 0 || l.ufwState() != state {
		t.Fatalf("apply --dry-run changed ufw: %v", diff)
	}

	apply := l.ok(l.emrkit(runOpts{}, "apply"), "apply")
	t.Logf("apply took %v:\n%s", apply.took, apply.stdout)
	m.record("after apply", l.probe(ports))
	loopback := l.reach(3306, true)

	numbered := l.ufw("status", "numbered")
	again := l.ok(l.emrkit(runOpts{}, "apply"), "second apply")
	if !strings.Contains(again.stdout, "nothing to change") {
		t.Errorf("second apply changed something:\n%s", again.stdout)
	}
	if got := l.ufw("status", "numbered"); got != numbered {
		t.Errorf("second apply changed the rules:\n%s\nwas\n%s", got, numbered)
	}
	if got := emrkitLines(l.ufw("show", "added")); len(got) != 4 {
		t.Errorf("emrkit rules after two applies: %q, want 4", got)
	}
	keptReadsFollowUFW(t, l)
	if !strings.Contains(l.ufw("app", "list"), "emrkit-oscar") {
		t.Error("`ufw app list` does not show emrkit-oscar")
	}
	st := l.ok(l.emrkit(runOpts{}, "status"), "status")
	if !strings.Contains(st.stdout, "Status: active") || !strings.Contains(st.stdout, "ok:") {
		t.Errorf("status:\n%s", st.stdout)
	}

	dryUndo := l.ok(l.emrkit(runOpts{}, "revert", "--dry-run"), "revert --dry-run")
	for _, want := range []string{"ufw disable", "ufw delete allow proto tcp from any to any port 22 comment 'emrkit'", "rm "} {
		if !strings.Contains(dryUndo.stdout, want) {
			t.Errorf("revert --dry-run does not show %q:\n%s", want, dryUndo.stdout)
		}
	}
	if got := l.ufw("status", "numbered"); got != numbered {
		t.Error("revert --dry-run changed the rules")
	}

	undo := l.ok(l.emrkit(runOpts{}, "revert"), "revert")
	t.Logf("undo took %v:\n%s", undo.took, undo.stdout)
	m.record("after undo", l.probe(ports))
	t.Logf("connection matrix (SSH on 22, ufw disabled before):\n%sloopback 3306 inside after apply: %v", m, loopback)

	m.expect(t, "baseline", 22, 8443, 3306, 8080)
	m.expect(t, "after apply", 22, 8443)
	m.expect(t, "after undo", 22, 8443, 3306, 8080)
	if !loopback {
		t.Error("after apply, 3306 is not reachable over loopback inside")
	}
	sameAsBaseline(t, l, files, tuples, state, false)
	for _, e := range entries(t, l) {
		if e.State != journal.Undone {
			t.Errorf("journal entry %s is %s after revert", e.ID, e.State)
		}
	}
}

// scenarioAdmin: ufw already active with the admin's own rules (one identical in spec to
// emrkit's HTTPS rule, one for the SSH port from an office network) and default allow
// incoming; sshd (as ss sees it) listens on 2222 and ssh_port is left to detection.
func scenarioAdmin(t *testing.T, l *lab) {
	ports := []int{2222, 8443, 3306, 8080}
	l.listen(2222, true)
	for _, p := range ports[1:] {
		l.listen(p, false)
	}
	l.ufw("default", "allow", "incoming")
	l.ufw("allow", "8443/tcp")
	l.ufw("allow", "from", "192.0.2.0/24", "to", "any", "port", "2222", "proto", "tcp", "comment", "office")
	l.ufw("--force", "enable")
	files, tuples, state := l.files(), l.tuples(), l.ufwState()
	m := newMatrix(ports...)
	m.record("baseline", l.probe(ports))

	apply := l.ok(l.emrkit(runOpts{}, "apply"), "apply")
	t.Logf("apply took %v:\n%s", apply.took, apply.stdout)
	m.record("after apply", l.probe(ports))
	loopback := l.reach(3306, true)
	added := l.ufw("show", "added")
	for _, want := range []string{
		"ufw allow 8443/tcp\n",
		"ufw allow from 192.0.2.0/24 to any port 2222 proto tcp comment 'office'",
		"ufw allow 2222/tcp comment 'emrkit'",
	} {
		if !strings.Contains(added, want) {
			t.Errorf("after apply, `ufw show added` lacks %q:\n%s", want, added)
		}
	}
	if strings.Contains(added, "8443/tcp comment 'emrkit'") {
		t.Errorf("emrkit took over the admin's 8443 rule:\n%s", added)
	}

	numbered := l.ufw("status", "numbered")
	l.ok(l.emrkit(runOpts{}, "apply"), "second apply")
	if got := l.ufw("status", "numbered"); got != numbered {
		t.Errorf("second apply changed the rules:\n%s\nwas\n%s", got, numbered)
	}

	undo := l.ok(l.emrkit(runOpts{}, "revert"), "revert")
	t.Logf("undo took %v:\n%s", undo.took, undo.stdout)
	m.record("after undo", l.probe(ports))
	t.Logf("connection matrix (SSH on 2222 detected by ss, admin rules, ufw active with allow incoming before):\n%sloopback 3306 inside after apply: %v", m, loopback)

	m.expect(t, "baseline", 2222, 8443, 3306, 8080)
	m.expect(t, "after apply", 2222, 8443)
	m.expect(t, "after undo", 2222, 8443, 3306, 8080)
	if !loopback {
		t.Error("after apply, 3306 is not reachable over loopback inside")
	}
	// ufw had already written its files in its own layout: everything is byte-identical.
	sameAsBaseline(t, l, files, tuples, state, true)
}

// scenarioBadInput: each bad value is one clear error naming the key, exit 1, nothing changed.
func scenarioBadInput(t *testing.T, l *lab) {
	files, state := l.files(), l.ufwState()
	for _, tc := range []struct{ firewall, want string }{
		{"{enable: true, https_port: abc}", `firewall.https_port: "abc" is not a port (1-65535)`},
		{"{enable: true, deny: [3306, 70000]}", `firewall.deny[1]: "70000" is not a port (1-65535)`},
		{"{enable: true, allow_from: [10.0.0.0/33]}", `firewall.allow_from[0]: "10.0.0.0/33" is not an address or CIDR`},
		{"{enable: true, deny: [8443]}", `firewall.deny[0]: 8443 is also firewall.https_port`},
	} {
		l.writeConfig(tc.firewall)
		r := l.emrkit(runOpts{}, "apply")
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line with %q", tc.firewall, r.code, r.stderr, tc.want)
		}
		t.Logf("%s -> exit %d: %s", tc.firewall, r.code, strings.TrimSpace(r.stderr))
	}
	if diff := diffSnapshots(files, l.files()); len(diff) > 0 || l.ufwState() != state {
		t.Errorf("bad input changed ufw: %v", diff)
	}
	if es := entries(t, l); len(es) != 0 {
		t.Errorf("bad input left journal entries: %+v", es)
	}
}

// scenarioBrokenTools: ufw missing, then iptables unusable (apply, then undo): clear errors,
// nothing half-applied, the journal true to the host, and undo working once iptables is back.
func scenarioBrokenTools(t *testing.T, l *lab) {
	files, tuples, state := l.files(), l.tuples(), l.ufwState()
	unchanged := func(what string) {
		t.Helper()
		if diff := diffSnapshots(files, l.files()); len(diff) > 0 || l.ufwState() != state {
			t.Errorf("%s changed ufw: %v", what, diff)
		}
		if es := entries(t, l); len(es) != 0 {
			t.Errorf("%s left journal entries: %+v", what, es)
		}
	}

	r := l.emrkitRaw(runOpts{env: []string{"EMRKIT_CHROOT_FIREWALL=1"}}, "/nonexistent/sbin/ufw", "apply")
	if r.code != 1 || !strings.Contains(r.stderr, "ufw not installed") || !strings.Contains(r.stderr, "apt install ufw") {
		t.Errorf("ufw missing: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("ufw missing -> exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	unchanged("apply without ufw")

	r = l.emrkit(runOpts{breakIPTables: true}, "apply")
	if r.code != 1 || !strings.Contains(r.stderr, "iptables") {
		t.Errorf("iptables unusable: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("iptables unusable -> exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	unchanged("apply with iptables unusable")

	l.ok(l.emrkit(runOpts{}, "apply"), "apply")
	applied := l.ufwState()
	done := 0
	for _, e := range entries(t, l) {
		if e.State == journal.Done {
			done++
		}
	}
	r = l.emrkit(runOpts{breakIPTables: true}, "revert")
	if r.code != 1 || !strings.Contains(r.stderr, "iptables") {
		t.Errorf("revert with iptables unusable: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("revert with iptables unusable -> exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	if l.ufwState() != applied {
		t.Error("a failed revert changed ufw")
	}
	stillDone := 0
	for _, e := range entries(t, l) {
		if e.State == journal.Done {
			stillDone++
		}
	}
	// The profile is a plain file and the newest entries go first: the failed ufw call
	// stops the revert before anything is undone.
	if stillDone != done {
		t.Errorf("journal after a failed revert: %d done entries, was %d", stillDone, done)
	}
	l.ok(l.emrkit(runOpts{}, "revert"), "revert once iptables works")
	sameAsBaseline(t, l, files, tuples, state, false)
}

// keptReadsFollowUFW: a no-op apply answers from the reads the last run kept and starts no
// ufw at all; an admin's `ufw disable`, and a kernel table flushed behind ufw's back
// (ufw-init stop, which leaves ENABLED=yes), are each seen, and the firewall is enabled again.
func keptReadsFollowUFW(t *testing.T, l *lab) {
	t.Helper()
	calls := filepath.Join(l.dir, "ufw-calls")
	counted := filepath.Join(l.dir, "ufw-counted")
	wrapper := "#!/bin/sh\necho \"$*\" >>" + calls + "\nexec /usr/sbin/ufw \"$@\"\n"
	if err := os.WriteFile(counted, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	apply := func(what string) (result, []string) {
		t.Helper()
		os.Remove(calls)
		r := l.emrkitRaw(runOpts{env: l.env}, counted, "apply")
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
		data, _ := os.ReadFile(calls)
		return r, strings.FieldsFunc(string(data), func(c rune) bool { return c == '\n' })
	}
	apply("apply through the counting ufw") // its path is part of the fingerprint
	if r, ran := apply("no-op apply"); len(ran) != 0 || !strings.Contains(r.stdout, "nothing to change") {
		t.Errorf("a no-op apply over unchanged ufw state started ufw %v (took %v):\n%s", ran, r.took, r.stdout)
	} else {
		t.Logf("no-op apply without starting ufw took %v", r.took)
	}
	for _, c := range []struct{ what, cmd string }{
		{"an admin's ufw disable", "/usr/sbin/ufw disable"},
		{"ufw-init stop (chains flushed, ENABLED=yes kept)", "/lib/ufw/ufw-init stop"},
	} {
		l.ns(runOpts{}, strings.Fields(c.cmd)...)
		if !strings.Contains(l.ufw("status"), "inactive") {
			t.Fatalf("%s: ufw still active", c.what)
		}
		r, ran := apply("apply after " + c.what)
		if !slices.Contains(ran, "--force enable") {
			t.Errorf("apply after %s did not enable ufw again (ran %v):\n%s", c.what, ran, r.stdout)
		}
		if !strings.Contains(l.ufw("status"), "Status: active") || l.reach(3306, false) {
			t.Errorf("after %s and apply: ufw is not active, or 3306 is reachable from outside", c.what)
		}
	}
}
