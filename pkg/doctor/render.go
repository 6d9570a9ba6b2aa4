package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// JSON writes the report for programs (schema.json).
func (r Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

var colours = map[Status]string{Pass: "\033[32m", Warn: "\033[33m", Fail: "\033[31;1m", Skip: "\033[90m"}

// Table writes the report for people: a line per check, the fix under each that did not
// pass, and the score. colour is for terminals only.
func (r Report) Table(w io.Writer, colour bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "STATUS\tCHECK\tFINDING\n")
	for _, c := range r.Checks {
		status := string(c.Status)
		if colour {
			status = colours[c.Status] + status + "\033[0m"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", status, c.Title, c.Finding)
		if c.Status != Pass && c.Fix != "" {
			fmt.Fprintf(tw, "\t  fix: %s\t\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s profile: %d of %d controls pass (%d failed", r.Profile, r.Passed, r.Applicable, r.Failed)
	if r.Skipped > 0 {
		fmt.Fprintf(w, ", %d not checked", r.Skipped)
		if !r.AsRoot {
			fmt.Fprintf(w, ": run as root to check them")
		}
	}
	fmt.Fprintf(w, ") in %.1fs\n", r.Seconds)
	var safeguards []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			safeguards = append(safeguards, c.ID+": "+c.Safeguard)
		}
	}
	if len(safeguards) > 0 {
		fmt.Fprintf(w, "HIPAA Security Rule safeguards at stake: %s\n", strings.Join(safeguards, "; "))
	}
	return nil
}
