package openemr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/fsutil"
)

// Install is an OpenEMR tree as emrkit found it.
type Install struct {
	Root string
	// Resolved is Root with its links resolved (/var/www/html/openemr -> openemr-7.0.3, the
	// usual way to upgrade): Apache maps a URL of the real directory to this path, so the
	// denies name both.
	Resolved string
	Version  Version
	// Sites are the directories under sites/ that hold a sqlconf.php.
	Sites []string
	// Site is the configured site, and SQLConf its database settings.
	Site    string
	SQLConf SQLConf
	// WebUser and WebGroup run PHP; WebGID is the group sqlconf.php is left readable by.
	WebUser, WebGroup string
	WebGID            int
}

// Version is what version.php says.
type Version struct {
	Major, Minor, Patch, RealPatch, Tag string
	Database                            int
}

func (v Version) String() string {
	s := v.Major + "." + v.Minor + "." + v.Patch
	if v.RealPatch != "" && v.RealPatch != "0" {
		s += "." + v.RealPatch
	}
	return s + v.Tag
}

// MajorNumber is the major version as a number (0 when version.php does not say).
func (v Version) MajorNumber() int {
	n, _ := strconv.Atoi(v.Major)
	return n
}

// SQLConf is the part of sites/<site>/sqlconf.php emrkit needs: where the database is. The
// password is never read: emrkit connects as configured in database.* (root over the socket).
type SQLConf struct {
	Host, Port, Database string
	// Configured is $config = 1: setup.php has run. Before that, nothing may be locked.
	Configured bool
}

// NotInstalledError says OpenEMR is not (fully) on the host yet: the steps defer.
type NotInstalledError struct{ Reason string }

func (e *NotInstalledError) Error() string { return e.Reason }

// Detect finds the OpenEMR tree (cfg.Root, or the first of roots that has one) and reads its
// version, sites, the configured site's sqlconf.php and the web server's account.
func Detect(cfg config.OpenEMR, roots []string) (Install, error) {
	candidates := roots
	if cfg.Root != "" {
		candidates = []string{cfg.Root}
	}
	var in Install
	for _, r := range candidates {
		if _, err := os.Stat(filepath.Join(r, "version.php")); err == nil {
			in.Root = r
			break
		}
	}
	if in.Root == "" {
		if cfg.Root != "" {
			// A configured root that is not there is a mistake, not an install to wait for.
			return in, fmt.Errorf("openemr.root: no OpenEMR in %s (no version.php); fix openemr.root (emrkit/openemr-root)", cfg.Root)
		}
		return in, &NotInstalledError{Reason: "OpenEMR is not installed (no version.php in " + strings.Join(roots, " or ") +
			"); install it, or set openemr.root, then run `emrkit apply`"}
	}
	if !safePath.MatchString(in.Root) {
		return in, fmt.Errorf("openemr.root: %q has characters emrkit will not write into Apache's configuration; use a path of letters, digits, . _ - /", in.Root)
	}
	resolved, err := filepath.EvalSymlinks(in.Root)
	if err != nil {
		return in, fmt.Errorf("openemr.root: %w", err)
	}
	if !safePath.MatchString(resolved) {
		return in, fmt.Errorf("openemr.root: %s is a link to %q, which has characters emrkit will not write into Apache's configuration; use a path of letters, digits, . _ - /", in.Root, resolved)
	}
	in.Resolved = resolved
	data, err := fsutil.ReadFile(filepath.Join(in.Root, "version.php"), fsutil.TextLimit)
	if err != nil {
		return in, fmt.Errorf("read OpenEMR's version: %w", err)
	}
	if in.Version, err = ParseVersion(string(data)); err != nil {
		return in, fmt.Errorf("%s: %w", filepath.Join(in.Root, "version.php"), err)
	}
	if in.Sites, err = sites(in.Root); err != nil {
		return in, err
	}
	in.Site = cfg.SiteName()
	conf := filepath.Join(in.Root, "sites", in.Site, "sqlconf.php")
	data, err = fsutil.ReadFile(conf, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return in, fmt.Errorf("openemr.site: no %s (sites here: %s); fix openemr.site (emrkit/openemr-site)", conf, strings.Join(in.Sites, ", "))
	}
	if err != nil {
		return in, fmt.Errorf("read %s: %w", conf, err)
	}
	if in.SQLConf, err = ParseSQLConf(string(data)); err != nil {
		return in, fmt.Errorf("%s: %w", conf, err)
	}
	if !in.SQLConf.Configured {
		return in, &NotInstalledError{Reason: "OpenEMR " + in.Version.String() + " in " + in.Root +
			" is not set up yet ($config = 0 in sites/" + in.Site + "/sqlconf.php); run its setup, then `emrkit apply`"}
	}
	in.WebUser = cfg.WebUserName()
	u, err := user.Lookup(in.WebUser)
	if err != nil {
		return in, fmt.Errorf("openemr.web_user: %v; set the user PHP runs as (Debian's Apache: www-data)", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return in, fmt.Errorf("openemr.web_user: group of %s: %w", in.WebUser, err)
	}
	in.WebGroup = g.Name
	in.WebGID, _ = strconv.Atoi(u.Gid)
	return in, nil
}

// safePath is what a root may hold to be written into Apache's configuration and regexes.
var safePath = regexp.MustCompile(`^/[A-Za-z0-9._/\-]*$`)

// sites lists the site directories (those with a sqlconf.php).
func sites(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "sites"))
	if err != nil {
		return nil, fmt.Errorf("OpenEMR's sites: %w", err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "sites", e.Name(), "sqlconf.php")); e.IsDir() && err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

var versionVar = regexp.MustCompile(`(?m)^\s*\$v_(major|minor|patch|tag|realpatch|database)\s*=\s*'?([^';]*)'?\s*;`)

// ParseVersion reads version.php ($v_major = '7'; ... $v_database = 469;).
func ParseVersion(php string) (Version, error) {
	var v Version
	found := map[string]bool{}
	for _, m := range versionVar.FindAllStringSubmatch(php, -1) {
		found[m[1]] = true
		switch m[1] {
		case "major":
			v.Major = m[2]
		case "minor":
			v.Minor = m[2]
		case "patch":
			v.Patch = m[2]
		case "tag":
			v.Tag = m[2]
		case "realpatch":
			v.RealPatch = m[2]
		case "database":
			v.Database, _ = strconv.Atoi(strings.TrimSpace(m[2]))
		}
	}
	if !found["major"] || !found["minor"] || !found["patch"] {
		return v, errors.New("no $v_major/$v_minor/$v_patch: not OpenEMR's version.php")
	}
	return v, nil
}

// sqlconfVar is an assignment of a PHP string, 'single' (escapes \' and \\) or "double"
// (without escapes or $), or of a bare word (3306, 1). RE2 reads any file in linear time.
var sqlconfVar = regexp.MustCompile(`(?m)^\s*\$(host|port|dbase|config)\s*=\s*(?:'((?s:[^'\\]|\\.)*)'|"([^"\\$]*)"|([^'";\s]*))\s*;`)

// withoutComments is php with its /* */, // and # comments blanked (a block's line breaks
// kept, so each assignment still starts a line), strings left whole: a "/*" inside a quoted
// value opens nothing.
func withoutComments(php string) string {
	var b strings.Builder
	for i := 0; i < len(php); i++ {
		switch c := php[i]; {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(php) && php[j] != c {
				if php[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j, len(php)-1)
			b.WriteString(php[i : j+1])
			i = j
		case c == '/' && strings.HasPrefix(php[i:], "/*"):
			end := strings.Index(php[i+2:], "*/")
			if end < 0 {
				end = len(php) - i - 2 // unterminated: PHP reads the rest as a comment
			}
			b.WriteString(strings.Repeat("\n", strings.Count(php[i:i+2+end], "\n")))
			i += 2 + end + 1
		case c == '#' || c == '/' && strings.HasPrefix(php[i:], "//"):
			end := strings.IndexByte(php[i:], '\n')
			if end < 0 {
				return b.String()
			}
			i += end - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ParseSQLConf reads the 7.x and 8.x sqlconf.php ($host\t= 'localhost'; ... $config = 1;).
// $login and $pass are not read.
func ParseSQLConf(php string) (SQLConf, error) {
	var c SQLConf
	unquote := strings.NewReplacer(`\\`, `\`, `\'`, `'`)
	// An old setting kept in a comment is not the one PHP runs.
	for _, m := range sqlconfVar.FindAllStringSubmatch(withoutComments(php), -1) {
		v := unquote.Replace(m[2]) + m[3] + m[4] // one of them matched
		switch m[1] {
		case "host":
			c.Host = v
		case "port":
			c.Port = v
		case "dbase":
			c.Database = v
		case "config":
			c.Configured = strings.TrimSpace(v) == "1"
		}
	}
	if c.Database == "" {
		return c, errors.New("no $dbase: not OpenEMR's sqlconf.php")
	}
	return c, nil
}
