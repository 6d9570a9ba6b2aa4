package twofa

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// URIFile is the root-only file (0600) where enrolments made without a terminal (an
// unattended install) leave each user's otpauth:// URI for the admin to hand over. One line
// per user: "user<TAB>uri".
type URIFile struct{ Path string }

// URIFileName is its name in the state dir.
const URIFileName = "totp-enrolments.txt"

func (f *URIFile) read() ([]string, error) {
	data, err := fsutil.ReadFile(f.Path, fsutil.TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Path, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	return lines, sc.Err()
}

func (f *URIFile) write(lines []string) error {
	if len(lines) == 0 {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	return fsutil.WriteAtomic(f.Path, []byte(strings.Join(lines, "\n")+"\n"), 0o600, nil)
}

func without(lines []string, user string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, user+"\t") {
			out = append(out, l)
		}
	}
	return out
}

// Put records user's URI, replacing an older one.
func (f *URIFile) Put(user, uri string) error {
	lines, err := f.read()
	if err != nil {
		return err
	}
	return f.write(append(without(lines, user), user+"\t"+uri))
}

// Remove forgets user's URI.
func (f *URIFile) Remove(user string) error {
	lines, err := f.read()
	if err != nil {
		return err
	}
	return f.write(without(lines, user))
}

// Get returns user's URI, the one Put recorded last; ok is false when there is none.
func (f *URIFile) Get(user string) (uri string, ok bool, err error) {
	lines, err := f.read()
	if err != nil {
		return "", false, err
	}
	for _, l := range lines {
		if u, found := strings.CutPrefix(l, user+"\t"); found {
			uri, ok = u, true
		}
	}
	return uri, ok, nil
}
