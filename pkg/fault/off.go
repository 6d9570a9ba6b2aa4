//go:build !faultinject

package fault

// Point is a no-op outside fault-injection builds.
func Point(string) {}
