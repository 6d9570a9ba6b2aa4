// Package fault kills the process at numbered points so tests can prove that a crash at any
// journal step converges on re-run. Only binaries built with -tags faultinject honour it;
// the server binary compiles Point to nothing.
package fault

// Env names the variable that arms the injector: "N" kills the process with SIGKILL at the
// N-th point reached (counting from 1), "list" prints every point reached to stderr.
const Env = "EMRKIT_FAULT"

// CounterEnv names a file that counts the points across processes: one dpkg run starts
// several emrkit processes (the old package's prerm, the new one's postinst), and without it
// each counts from 1, so a point of the second could never be the one killed.
const CounterEnv = "EMRKIT_FAULT_COUNTER"
