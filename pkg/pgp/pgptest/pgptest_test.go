package pgptest

import (
	"os/exec"
	"testing"
)

// TestWatchCatchesArgv proves the watch sees a short-lived process's argv and environment:
// the PGP tests' "no passphrase in argv" checks rely on it.
func TestWatchCatchesArgv(t *testing.T) {
	w := WatchProcs()
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2", "sh", "not-a-real-passphrase-0123456789")
	cmd.Env = []string{"LEAK=env-secret-9876543210"}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	leaks, seen := w.Leaks([][]byte{[]byte("not-a-real-passphrase-0123456789"), []byte("env-secret-9876543210")})
	if len(leaks) < 2 {
		t.Fatalf("the watch caught %d of 2 leaks (%d argvs seen): %v", len(leaks), len(seen), leaks)
	}
}
