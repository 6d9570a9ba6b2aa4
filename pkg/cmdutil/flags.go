package cmdutil

import (
	"fmt"
	"strconv"
	"time"
)

// IntRange is an integer flag that refuses, as it is parsed, anything outside Min..Max: a
// usage error (pflag's, exit 2) naming the flag, the value and the range, instead of 0 or a
// negative number quietly meaning something else. Set P to the default before registering.
type IntRange struct {
	P        *int
	Min, Max int
	What     string // "rows per transaction": the message says "<What> must be Min..Max"
}

func (f *IntRange) Type() string { return "int" }

func (f *IntRange) String() string {
	if f.P == nil {
		return "0"
	}
	return strconv.Itoa(*f.P)
}

func (f *IntRange) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < f.Min || n > f.Max {
		return fmt.Errorf("%s must be %d..%d", f.What, f.Min, f.Max)
	}
	*f.P = n
	return nil
}

// DurationRange is IntRange for a time.Duration flag ("60s").
type DurationRange struct {
	P        *time.Duration
	Min, Max time.Duration
	What     string
}

func (f *DurationRange) Type() string { return "duration" }

func (f *DurationRange) String() string {
	if f.P == nil {
		return "0s"
	}
	return f.P.String()
}

func (f *DurationRange) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < f.Min || d > f.Max {
		return fmt.Errorf("%s must be a duration from %v to %v (e.g. 60s)", f.What, f.Min, f.Max)
	}
	*f.P = d
	return nil
}
