//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// reached counts points in this process when CounterEnv is unset; a test binary's global is
// acceptable, the server binary never compiles this file.
var reached atomic.Int64

// Point kills the process when it is the N-th point reached and EMRKIT_FAULT=N.
func Point(name string) {
	arm := os.Getenv(Env)
	if arm == "" {
		return
	}
	n := next()
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

// next is the number of this point: counted in CounterEnv's file (under an exclusive lock)
// when it is set, else in this process.
func next() int64 {
	path := os.Getenv(CounterEnv)
	if path == "" {
		return reached.Add(1)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		panic(fmt.Sprintf("fault counter: %v", err))
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		panic(fmt.Sprintf("fault counter: %v", err))
	}
	buf := make([]byte, 32)
	k, _ := f.ReadAt(buf, 0)
	n, _ := strconv.ParseInt(strings.TrimSpace(string(buf[:k])), 10, 64)
	n++
	if _, err := f.WriteAt([]byte(strconv.FormatInt(n, 10)+"\n"), 0); err != nil {
		panic(fmt.Sprintf("fault counter: %v", err))
	}
	return n
}
