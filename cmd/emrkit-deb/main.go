// Command emrkit-deb builds emrkit's .deb (`make deb`) and its signed APT repository
// (`emrkit-deb repo`, `make repo`). It is a separate entry point so the server binary links
// neither nfpm nor the repository writer. It wires flags to pkg/deb and pkg/aptrepo and
// renders the man pages.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/emrkit/emrkit/pkg/cmd/root"
	"github.com/emrkit/emrkit/pkg/cmdutil"
	"github.com/emrkit/emrkit/pkg/deb"
	"github.com/emrkit/emrkit/pkg/plan"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "repo":
			os.Exit(repoMain(os.Args[2:]))
		case "repo-key":
			os.Exit(repoKeyMain(os.Args[2:]))
		}
	}
	var o deb.Options
	flag.StringVar(&o.Spec, "spec", "nfpm.yaml", "nfpm spec")
	flag.StringVar(&o.Changelog, "changelog", "debian/changelog.yaml", "chglog changelog")
	flag.StringVar(&o.Version, "version", "", "upstream version (required)")
	flag.StringVar(&o.Release, "release", "1", "Debian revision")
	flag.StringVar(&o.Arch, "arch", "amd64", "Debian architecture")
	flag.StringVar(&o.Binary, "binary", "", "emrkit binary to ship (required)")
	flag.StringVar(&o.OutDir, "out", "dist", "output directory")
	flag.Parse()
	if o.Version == "" || o.Binary == "" {
		fmt.Fprintln(os.Stderr, "emrkit-deb: --version and --binary are required")
		os.Exit(2)
	}
	mtime, ok := sourceDate()
	if !ok {
		os.Exit(2)
	}
	o.MTime = mtime
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "emrkit-deb: %v\n", err)
		os.Exit(1)
	}
}

func run(o deb.Options) error {
	mandir, err := os.MkdirTemp("", "emrkit-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(mandir)
	if err := manPages(mandir, o.Version+"-"+o.Release, o.MTime); err != nil {
		return err
	}
	o.ManDir = mandir
	out, err := deb.Build(o)
	if err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}

// manPages renders one gzipped page per visible command, dated at the build's timestamp.
func manPages(dir, version string, date time.Time) error {
	f := &cmdutil.Factory{Version: version, Host: plan.DefaultHost()}
	cmd := root.New(f)
	cmd.DisableAutoGenTag = true
	plain := filepath.Join(dir, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		return err
	}
	header := &doc.GenManHeader{Title: "EMRKIT", Section: "1", Date: &date, Source: "emrkit " + version, Manual: "emrkit manual"}
	if err := doc.GenManTree(cmd, header, plain); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	pages, err := filepath.Glob(filepath.Join(plain, "*.1"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		gz, err := deb.Gzip(data)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)+".gz"), gz, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sourceDate is SOURCE_DATE_EPOCH, every timestamp of a reproducible build.
func sourceDate() (time.Time, bool) {
	epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emrkit-deb: set SOURCE_DATE_EPOCH (the Makefile takes it from the last commit)")
		return time.Time{}, false
	}
	return time.Unix(epoch, 0).UTC(), true
}
