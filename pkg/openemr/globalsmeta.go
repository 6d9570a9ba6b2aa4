package openemr

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
)

// GlobalsMetadata is the installed OpenEMR's own list of its globals: library/globals.inc.php,
// whose $GLOBALS_METADATA its Globals screen and installer read. A global it does not define
// is one that version cannot enforce, whatever row emrkit writes (4.1.1 has no minimum length
// and no failed-login limit); password_history is yes/no there, a count from 5.0 on.
const GlobalsMetadata = "library/globals.inc.php"

// globalDefinition is one definition: 'name' => array(xl('Title'), 'bool' | 'num' | array(...), ...
// (the title may be any xl* call and either quote).
var globalDefinition = regexp.MustCompile(`'([a-z0-9_]+)'\s*=>\s*array\s*\(\s*xl\w*\(\s*(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*\)\s*,\s*(?:'(\w+)')?`)

// Policy is the password policy as the installed version can hold it.
type Policy struct {
	// Globals are written and checked; a yes/no global holds 1 for any non-zero value.
	Globals []config.PasswordGlobal
	// Unenforceable are the configured globals this version does not define.
	Unenforceable []string
}

// Globals reads the tree's globals metadata: each global the version defines, with its type
// ("bool", "num", ...; "" for a list of choices).
func (in Install) Globals() (map[string]string, error) {
	path := filepath.Join(in.Root, GlobalsMetadata)
	data, err := fsutil.ReadFile(path, fsutil.TextLimit)
	if err != nil {
		return nil, fmt.Errorf("read OpenEMR's globals metadata (emrkit writes only the globals the installed version defines): %w", err)
	}
	types := map[string]string{}
	for _, m := range globalDefinition.FindAllStringSubmatch(withoutComments(string(data)), -1) {
		types[m[1]] = m[2]
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("%s defines no globals: not OpenEMR's globals metadata", path)
	}
	return types, nil
}

// PasswordPolicy keeps what the installed version defines of p.
func (in Install) PasswordPolicy(p config.PasswordPolicy) (Policy, error) {
	types, err := in.Globals()
	if err != nil {
		return Policy{}, err
	}
	var out Policy
	for _, g := range p.Globals() {
		kind, ok := types[g.Name]
		switch {
		case !ok:
			out.Unenforceable = append(out.Unenforceable, g.Name)
			continue
		case kind == "bool":
			g.Value, g.Min, g.Max = min(g.Value, 1), 0, 1
		}
		out.Globals = append(out.Globals, g)
	}
	return out, nil
}

// Note says what the version cannot enforce, for apply's warnings and doctor's finding.
func (p Policy) Note(v Version) string {
	if len(p.Unenforceable) == 0 {
		return ""
	}
	return fmt.Sprintf("OpenEMR %s does not define %s (%s): its password policy cannot enforce them; upgrade OpenEMR for them",
		v, strings.Join(p.Unenforceable, ", "), GlobalsMetadata)
}
