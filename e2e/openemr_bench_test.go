package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/openemrfixture"
)

// BenchmarkOpenEMRApply: on an OpenEMR host under Debian's real apache2 (the lab: a 7.x tree,
// its database on a private MariaDB), one `emrkit apply` that makes every change (scripts,
// sqlconf.php, the Apache snippets, module and PHP drop-in with their configtests and the
// run's one graceful reload, the globals) and one that finds nothing to change; `emrkit
// revert --all` between rounds is not timed. The goals are under 1 s and under 0.2 s (issue 24); the metrics are seconds per
// run of each.
func BenchmarkOpenEMRApply(b *testing.B) {
	h := newOpenEMRLabHost(b, openemrfixture.Tree{Major: 7, Database: "openemr"}, "")
	var apply, noop time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if r := h.emrkit("apply"); r.code != 0 {
			b.Fatalf("apply: %+v", r)
		}
		apply += time.Since(start)
		start = time.Now()
		if r := h.emrkit("apply"); r.code != 0 || !strings.Contains(r.stdout, "nothing to change") {
			b.Fatalf("no-op apply: %+v", r)
		}
		noop += time.Since(start)
		b.StopTimer()
		if r := h.emrkit("revert", "--all"); r.code != 0 {
			b.Fatalf("revert: %+v", r)
		}
		b.StartTimer()
	}
	b.ReportMetric(apply.Seconds()/float64(b.N), "s/apply")
	b.ReportMetric(noop.Seconds()/float64(b.N), "s/noop-apply")
}
