package root

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/cmdutil"
)

// TestWrongArgumentsAreUsageErrors: a wrong number of arguments, or a group command without
// a known subcommand, exits 2 with one line, whichever command it is.
func TestWrongArgumentsAreUsageErrors(t *testing.T) {
	for args, want := range map[string]string{
		"apply extra":         `unknown command "extra" for "emrkit apply"`,
		"2fa enroll":          "accepts 1 arg(s), received 0",
		"restore":             "give the backup FILE, or --from offsite",
		"restore --from tape": `--from "tape": the only other place`,
		"migrate up a b":      "accepts 1 arg(s), received 2",
		"migrate":             "emrkit migrate needs a subcommand: down, list, up",
		"firewall sideways":   `unknown command "sideways" for "emrkit firewall"`,
		"backup --keep=many":  `invalid argument "many"`,
	} {
		var out, errb bytes.Buffer
		f := &cmdutil.Factory{In: strings.NewReader(""), Out: &out, Err: &errb}
		cmd := New(f)
		cmd.SetArgs(append([]string{"--config", t.TempDir() + "/none.yaml"}, strings.Fields(args)...))
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		err := cmd.ExecuteContext(context.Background())
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitUsage || err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: exit %d, %v; want exit 2 and %q", args, code, err, want)
		}
	}
}
