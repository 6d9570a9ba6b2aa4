package firewall

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRestoreRuleFilesOnlyWhenSameRules(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "user.rules")
	pristine := []byte("*filter\n:ufw-user-input - [0:0]\n### RULES ###\n\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=61646d696e\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\nCOMMIT\n")
	// ufw's rewrite after emrkit's rule came and went: same rule records, more boilerplate.
	rewritten := []byte("*filter\n:ufw-user-input - [0:0]\n:ufw-user-logging-input - [0:0]\n### RULES ###\n\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=61646d696e\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n\n### END RULES ###\n### LOGGING ###\n### END LOGGING ###\nCOMMIT\n")
	os.WriteFile(p, rewritten, 0o640)
	if err := restoreRuleFiles(map[string][]byte{p: pristine}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != string(pristine) {
		t.Fatalf("not restored:\n%s", got)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Someone added a rule since: the file now records more, so it is left as it is.
	withMore := append(append([]byte{}, rewritten...), []byte("### tuple ### deny tcp 25 0.0.0.0/0 any 0.0.0.0/0 in\n")...)
	os.WriteFile(p, withMore, 0o640)
	restoreRuleFiles(map[string][]byte{p: pristine})
	if got, _ := os.ReadFile(p); string(got) != string(withMore) {
		t.Fatal("a file with other rules was overwritten")
	}
}
