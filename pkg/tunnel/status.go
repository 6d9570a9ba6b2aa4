package tunnel

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// State is how the tunnel stands, for `emrkit portal status`.
type State struct {
	// Up: systemd runs the unit and ssh is running (with ExitOnForwardFailure, an ssh that
	// keeps running holds its forwards); without systemd, an ssh runs ExecStart.
	Up bool `json:"up"`
	// Since is when it came up (RFC 3339, UTC), "" when it is not up.
	Since string `json:"since,omitempty"`
	// Detail says what the state rests on, or why the tunnel is down, in one line.
	Detail string `json:"detail"`
	// Systemd reports whether systemd is running; Enabled whether the unit is enabled.
	Systemd bool `json:"systemd"`
	Enabled bool `json:"enabled"`
	// ActiveState is systemd's view ("active (running)", "activating (auto-restart)").
	ActiveState string `json:"active_state,omitempty"`
	// Restarts is how often systemd ran ssh again (NRestarts).
	Restarts int `json:"restarts,omitempty"`
	// PIDs are the ssh processes running the tunnel.
	PIDs []int `json:"pids,omitempty"`
	// Key is the tunnel key's fingerprint ("SHA256:..."), "" when there is none.
	Key string `json:"key_fingerprint,omitempty"`
	// Portal is user@host:port of the installed configuration; Forwards its forwards.
	Portal   string    `json:"portal,omitempty"`
	Forwards []Forward `json:"forwards"`
}

// Status reads the tunnel's state from systemd (or the process table where systemd does not
// run), the installed configuration and the key. It fails only when systemd cannot be read.
func Status(ctx context.Context, env Env) (State, error) {
	st := State{Systemd: env.systemdRunning(), Forwards: []Forward{}}
	var notes []string
	if cfg, err := fsutil.ReadFile(env.SSHConfigPath(), fsutil.TextLimit); err == nil {
		t := tunnelOf(cfg)
		st.Portal = fmt.Sprintf("%s@%s:%d", t.User, t.Host, t.Port)
		if t.Forwards != nil {
			st.Forwards = t.Forwards
		}
	} else {
		notes = append(notes, "no configuration at "+env.SSHConfigPath())
	}
	if line, err := PublicKey(env); err == nil {
		if blob, err := base64.StdEncoding.DecodeString(strings.Fields(line)[1]); err == nil {
			st.Key = fingerprint(blob)
		}
	} else {
		notes = append(notes, "no key at "+env.KeyPath())
	}
	if target, err := os.Readlink(env.WantsLink()); err == nil && target == env.UnitPath() {
		st.Enabled = true
	}
	if a, err := lookupAccount(env.SystemUser); err == nil {
		st.PIDs = tunnelPIDs("/proc", a.UID, ExecStart(env))
	} else if errors.Is(err, errNoAccount) {
		notes = append(notes, "no user "+env.SystemUser)
	}
	if st.Systemd {
		u, err := showUnit(ctx, env, "LoadState", "ActiveState", "SubState", "ActiveEnterTimestampMonotonic", "NRestarts")
		if err != nil {
			return st, err
		}
		st.ActiveState = u["ActiveState"] + " (" + u["SubState"] + ")"
		fmt.Sscanf(u["NRestarts"], "%d", &st.Restarts)
		st.Up = u["ActiveState"] == "active" && u["SubState"] == "running"
		if t, ok := monotonicToTime(u["ActiveEnterTimestampMonotonic"]); ok && st.Up {
			st.Since = t.UTC().Format(time.RFC3339)
		}
		switch {
		case u["LoadState"] == "not-found":
			notes = append([]string{UnitName + " is not installed (run `emrkit apply`)"}, notes...)
		case st.Up:
			notes = append([]string{UnitName + " " + st.ActiveState}, notes...)
		default:
			notes = append([]string{fmt.Sprintf("%s %s, %d restarts: `journalctl -u %s` says why",
				UnitName, st.ActiveState, st.Restarts, UnitName)}, notes...)
		}
	} else {
		st.Up = len(st.PIDs) > 0
		if st.Up {
			if t, err := processStart("/proc", st.PIDs[0]); err == nil {
				st.Since = t.UTC().Format(time.RFC3339)
			}
			notes = append([]string{fmt.Sprintf("systemd is not running; ssh (pid %d) runs the tunnel", st.PIDs[0])}, notes...)
		} else {
			when := "it starts at boot"
			if !st.Enabled {
				when = UnitName + " is not enabled"
			}
			notes = append([]string{"systemd is not running: " + when}, notes...)
		}
	}
	if st.Key != "" {
		notes = append(notes, "key "+st.Key)
	}
	if len(st.Forwards) > 0 {
		var fw []string
		for _, f := range st.Forwards {
			fw = append(fw, fmt.Sprintf("portal localhost:%d -> localhost:%d", f.RemotePort, f.LocalPort))
		}
		notes = append(notes, strings.Join(fw, ", "))
	}
	st.Detail = strings.Join(notes, "; ")
	return st, nil
}
