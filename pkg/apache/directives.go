package apache

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// Directive is one directive of Apache's configuration, as read from a file.
type Directive struct {
	File string
	Name string
	Args []string
}

// Directives returns the directives called one of names (case-insensitively, as Apache reads
// them) in apache2.conf and every enabled conf and site, in that order. It reads what Debian
// enables and does not follow Include: doctor asks it where Apache serves a tree and which
// certificate it presents, and a miss there is a probe not made, never a pass.
func (e Env) Directives(names ...string) ([]Directive, error) {
	files := []string{filepath.Join(e.Dir, "apache2.conf")}
	for _, d := range []string{"conf-enabled", "sites-enabled"} {
		more, err := filepath.Glob(filepath.Join(e.Dir, d, "*.conf"))
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	var out []Directive
	for _, f := range files {
		data, err := fsutil.ReadThroughLink(f, fsutil.TextLimit)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read Apache's configuration: %w", err)
		}
		for _, line := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
			words := splitArgs(line)
			if len(words) == 0 || strings.HasPrefix(words[0], "#") {
				continue
			}
			if slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, words[0]) }) {
				out = append(out, Directive{File: f, Name: words[0], Args: words[1:]})
			}
		}
	}
	return out, nil
}

// splitArgs splits a line into words, "quoted" ones whole.
func splitArgs(line string) []string {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				return append(out, line[1:])
			}
			out = append(out, line[1:1+end])
			line = line[2+end:]
			continue
		}
		end := strings.IndexAny(line, " \t")
		if end < 0 {
			return append(out, line)
		}
		out = append(out, line[:end])
		line = line[end:]
	}
	return out
}

// URLPrefixes are the URL paths (each ending in /) by which Apache's configuration maps to one
// of dirs: every Alias to it, and its place under every DocumentRoot. Links are resolved on
// both sides, so an Alias to the link and one to its target both count.
func (e Env) URLPrefixes(dirs []string) ([]string, error) {
	found, err := e.Directives("Alias", "DocumentRoot")
	if err != nil {
		return nil, err
	}
	real := func(p string) string {
		p = filepath.Clean(p)
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return p
	}
	var out []string
	add := func(prefix string) {
		prefix = strings.TrimSuffix(path.Clean("/"+prefix), "/") + "/"
		if !slices.Contains(out, prefix) {
			out = append(out, prefix)
		}
	}
	for _, d := range found {
		for _, dir := range dirs {
			switch {
			case strings.EqualFold(d.Name, "Alias") && len(d.Args) == 2 && (filepath.Clean(d.Args[1]) == dir || real(d.Args[1]) == real(dir)):
				add(d.Args[0])
			case strings.EqualFold(d.Name, "DocumentRoot") && len(d.Args) == 1:
				// The tree as a path of the document root: by its own name, not its target's.
				if rel, err := filepath.Rel(filepath.Clean(d.Args[0]), dir); err == nil && !strings.HasPrefix(rel, "..") {
					add(rel)
				}
			}
		}
	}
	return out, nil
}

// Certificates are the server certificates (DER) that Apache's SSLCertificateFile directives
// name: a local probe over HTTPS trusts these and nothing else.
func (e Env) Certificates() ([][]byte, error) {
	found, err := e.Directives("SSLCertificateFile")
	if err != nil {
		return nil, err
	}
	var out [][]byte
	var problems []string
	for _, d := range found {
		if len(d.Args) != 1 {
			continue
		}
		// certbot's live/ names are links into archive/: read through them.
		data, err := fsutil.ReadThroughLink(d.Args[0], fsutil.TextLimit)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if b, _ := pem.Decode(data); b != nil && b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no certificate readable from Apache's SSLCertificateFile directives %v", problems)
	}
	return out, nil
}
