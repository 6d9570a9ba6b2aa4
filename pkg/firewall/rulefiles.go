package firewall

import (
	"bytes"
	"errors"
	"io/fs"
	"slices"
	"syscall"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// readRuleFiles returns the contents of ufw's rule files that exist.
func readRuleFiles(paths []string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, p := range paths {
		data, err := fsutil.ReadFile(p, fsutil.TextLimit)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		files[p] = data
	}
	return files, nil
}

// ruleRecords are the "### tuple ###" lines: ufw's own record of the rules a file holds,
// without the chains and logging boilerplate it adds when it rewrites the file.
func ruleRecords(data []byte) [][]byte {
	var out [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("### tuple ###")) {
			out = append(out, l)
		}
	}
	return out
}

// restoreRuleFiles puts back the bytes a rule file had before emrkit's rule was added, when
// the file now records exactly the same rules (the rule is gone and nobody added another),
// so that undo leaves /etc/ufw as the admin had it, not merely equivalent.
func restoreRuleFiles(saved map[string][]byte) error {
	for p, before := range saved {
		cur, fi, err := fsutil.ReadFileStat(p, fsutil.TextLimit)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		if bytes.Equal(cur, before) || !slices.EqualFunc(ruleRecords(cur), ruleRecords(before), bytes.Equal) {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if err := fsutil.WriteAtomic(p, before, fi.Mode().Perm(), &fsutil.Owner{UID: int(st.Uid), GID: int(st.Gid)}); err != nil {
			return err
		}
	}
	return nil
}
