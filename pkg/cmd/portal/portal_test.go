package portal

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/tunnel"
)

// TestPrintReport: the human table names each part and its state, an unknown lag reads as
// unknown, and every problem gets its own line.
func TestPrintReport(t *testing.T) {
	var b bytes.Buffer
	printReport(&b, Report{Enabled: true, User: "emrkit_portal@127.0.0.1",
		Tunnel:   &tunnel.State{Up: false, Detail: "systemd is not running"},
		Grants:   []string{"GRANT USAGE ON *.* TO `emrkit_portal`@`127.0.0.1`"},
		Replica:  &ReplicaState{Running: true, LagSeconds: -1},
		Problems: []string{"tunnel: down: systemd is not running"}})
	out := b.String()
	for _, want := range []string{"tunnel", "down", "systemd is not running", "database user", "emrkit_portal@127.0.0.1",
		"GRANT USAGE", "replica", "running", "lag unknown", "PROBLEM: tunnel: down"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printReport(&b, Report{Enabled: false})
	if !strings.Contains(b.String(), "not enabled") {
		t.Errorf("disabled portal: %q", b.String())
	}
	b.Reset()
	printReport(&b, Report{Enabled: true, Tunnel: &tunnel.State{Up: true, Since: "2026-12-03T11:00:00Z"}, Replica: &ReplicaState{Running: true, LagSeconds: 2}})
	if out := b.String(); !strings.Contains(out, "up since 2026-12-03T11:00:00Z") || !strings.Contains(out, "lag 2 s") {
		t.Errorf("up tunnel, known lag:\n%s", out)
	}
}
