//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// reached counts points in this process; a test binary's global is acceptable, the server
// binary never compiles this file.
var reached atomic.Int64

// Point kills the process when it is the N-th point reached and EMRKIT_FAULT=N.
func Point(name string) {
	n := reached.Add(1)
	arm := os.Getenv(Env)
	if arm == "list" {
		fmt.Fprintf(os.Stderr, "fault point %d: %s\n", n, name)
		return
	}
	if at, err := strconv.ParseInt(arm, 10, 64); err == nil && at == n {
		fmt.Fprintf(os.Stderr, "fault: SIGKILL at point %d (%s)\n", n, name)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
