package doctor

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/openemr"
)

const webTitle = "Apache refuses the setup scripts, documents and secrets (403) under every URL of the tree"

// probe is one request of openemr.web-denies: a path of the tree and how findings name it (a
// patient document by its class, never by its own name). A denied path must answer 403; a
// listing probe only must not list (a redirect to HTTPS, where it is probed too, is no listing).
type probe struct {
	path, label string
	listing     bool
}

func (p probe) holds(code int) bool {
	if p.listing {
		return code != http.StatusOK
	}
	return code == http.StatusForbidden
}

// endpoint is where the probes go: an origin and the client that trusts it.
type endpoint struct {
	origin, how string
	client      *http.Client
}

// webDenies asks Apache for one of every class the snippet denies (each setup and upgrade
// script there is, contrib/, a real document, EDI/ERA files, sqlconf.php and a backup copy of
// it, a listing) under every URL prefix Apache maps to the tree (openemr.url's, each Alias,
// the tree's place under a DocumentRoot, for its path and its real path): each must answer
// 403. With openemr.https_redirect, or an https openemr.url, they are asked over HTTPS too.
func (h *host) webDenies(in openemr.Install) Check {
	const id = "openemr.web-denies"
	st, err := h.site()
	if err != nil {
		return skipped(id, webTitle, hipaaAccess, err)
	}
	prefixes := []string{st.own}
	more, err := h.env.Host.OpenEMR.Apache.URLPrefixes(in.Roots())
	if err != nil {
		return skipped(id, webTitle, hipaaAccess, err)
	}
	for _, p := range more {
		if !slices.Contains(prefixes, p) {
			prefixes = append(prefixes, p)
		}
	}
	ends, own := st.ends, st.own
	wrong := slices.Clone(st.problems)

	probes := webProbes(in)
	total := 0
	var where []string
	for _, e := range ends {
		for _, prefix := range prefixes {
			code, err := get(e.client, e.origin+prefix+"index.php")
			switch {
			case err != nil && prefix == own:
				return skipped(id, webTitle, hipaaAccess, fmt.Errorf("Apache does not answer at %s%s over %s (%v); set openemr.url", e.origin, prefix, e.how, err))
			case err == nil && code == http.StatusNotFound && prefix == own:
				return skipped(id, webTitle, hipaaAccess, fmt.Errorf("OpenEMR's login page answers 404 at %s%sindex.php; set openemr.url", e.origin, prefix))
			case err != nil || code == http.StatusNotFound:
				continue // a prefix of another virtual host: not served here
			}
			where = append(where, e.origin+prefix)
			for _, p := range probes {
				total++
				code, err := get(e.client, e.origin+(&url.URL{Path: prefix + p.path}).EscapedPath())
				switch {
				case err != nil:
					wrong = append(wrong, fmt.Sprintf("%s%s: %v", prefix, p.label, err))
				case !p.holds(code):
					wrong = append(wrong, fmt.Sprintf("%s%s answers %d", prefix, p.label, code))
				}
			}
		}
	}
	var hows []string
	for _, e := range ends {
		hows = append(hows, e.how)
	}
	const shown = 8
	finding := strings.Join(wrong[:min(len(wrong), shown)], ", ")
	if len(wrong) > shown {
		finding += fmt.Sprintf(" (and %d more)", len(wrong)-shown)
	}
	return check(id, webTitle, hipaaAccess, len(wrong) == 0,
		fmt.Sprintf("%d probes refused at %s (%s)", total, strings.Join(where, ", "), strings.Join(hows, "; ")),
		fmt.Sprintf("%d of %d probes not refused (%s): %s", len(wrong), total, strings.Join(hows, "; "), finding),
		"emrkit apply (the Apache snippet emrkit-openemr); a site that serves the tree elsewhere needs it too")
}

// site is how doctor reaches the local Apache: openemr.url, and the endpoints the probes go
// to (plain HTTP for an http url; HTTPS for an https url or with openemr.https_redirect).
type site struct {
	base *url.URL
	own  string // openemr.url's path, ending in /
	ends []endpoint
	// problems are findings of their own: a redirect that is not there.
	problems []string
}

func (h *host) site() (site, error) {
	base, err := url.Parse(strings.TrimSuffix(h.env.OpenEMRURL, "/"))
	if err != nil || base.Host == "" || base.Scheme != "http" && base.Scheme != "https" {
		return site{}, fmt.Errorf("openemr.url %q is not an http:// or https:// URL; fix openemr.url", h.env.OpenEMRURL)
	}
	st := site{base: base, own: strings.TrimSuffix(base.Path, "/") + "/"}
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: noRedirects}
	if base.Scheme == "http" {
		st.ends = append(st.ends, endpoint{origin: "http://" + base.Host, how: "plain HTTP", client: plain})
	}
	if base.Scheme == "https" || h.env.Config.OpenEMR.HTTPSRedirect {
		tlsEnd, problem, err := h.httpsEndpoint(base, plain)
		if err != nil {
			return site{}, err
		}
		if problem != "" {
			st.problems = append(st.problems, problem)
		} else {
			st.ends = append(st.ends, tlsEnd)
		}
	}
	return st, nil
}

// httpsEndpoint is where the probes go over HTTPS: openemr.url when it is https, or where the
// login page's redirect leads. The probe trusts only the certificates Apache's own
// configuration names (a self-signed one on 127.0.0.1 included), or the system's CAs when it
// names none it can read. problem is a redirect that is not there.
func (h *host) httpsEndpoint(base *url.URL, plain *http.Client) (e endpoint, problem string, err error) {
	origin := "https://" + base.Host
	if base.Scheme == "http" {
		resp, err := plain.Get(base.String() + "/index.php")
		if err != nil {
			return e, "", fmt.Errorf("Apache does not answer at %s (%v); set openemr.url", base, err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode/100 != 3 || loc == nil || loc.Scheme != "https" {
			return e, fmt.Sprintf("openemr.https_redirect is on, but %s/index.php answers %d without a redirect to HTTPS", base, resp.StatusCode), nil
		}
		origin = "https://" + loc.Host
	}
	e = endpoint{origin: origin, how: "HTTPS, trusting the system's CAs"}
	cfg := &tls.Config{}
	if certs, err := h.env.Host.OpenEMR.Apache.Certificates(); err == nil {
		e.how = "HTTPS, trusting only the certificate Apache's SSLCertificateFile names"
		cfg.InsecureSkipVerify = true // replaced by the pin below: the name on it may not be 127.0.0.1
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && slices.ContainsFunc(certs, func(c []byte) bool { return bytes.Equal(c, cs.PeerCertificates[0].Raw) }) {
				return nil
			}
			return errors.New("the server's certificate is not one Apache's SSLCertificateFile names")
		}
	}
	e.client = &http.Client{Timeout: 5 * time.Second, CheckRedirect: noRedirects, Transport: &http.Transport{TLSClientConfig: cfg}}
	return e, "", nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func get(c *http.Client, u string) (int, error) {
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// webProbes are the paths asked for: every class the snippet denies, with a real file of the
// tree where there is one (a path that does not exist proves less).
func webProbes(in openemr.Install) []probe {
	var out []probe
	for _, s := range openemr.Scripts {
		if _, err := os.Lstat(filepath.Join(in.Root, s)); err == nil {
			out = append(out, probe{path: s, label: s})
		}
	}
	served := func(rel string) bool {
		top, _, _ := strings.Cut(rel, "/")
		return slices.Contains(openemr.ContribServed, top)
	}
	if rel, ok := firstFile(filepath.Join(in.Root, "contrib"), served); ok {
		out = append(out, probe{path: "contrib/" + rel, label: "contrib/" + rel})
	} else {
		out = append(out, probe{path: "contrib/", label: "contrib/"})
	}
	site := "sites/" + in.Site + "/"
	for _, d := range []struct{ dir, what string }{{"documents", "a document"}, {"era", "an ERA file"}, {"edi", "an EDI file"}} {
		dir := filepath.Join(in.Root, site, d.dir)
		if rel, ok := firstFile(dir, func(rel string) bool { return path.Base(rel) == ".htaccess" }); ok {
			out = append(out, probe{path: site + d.dir + "/" + rel, label: site + d.dir + "/(" + d.what + ")"})
		} else if _, err := os.Stat(dir); err == nil || d.dir == "documents" {
			out = append(out, probe{path: site + d.dir + "/", label: site + d.dir + "/"})
		}
	}
	return append(out, probe{path: site + "sqlconf.php", label: site + "sqlconf.php"},
		probe{path: site + "sqlconf.php.bak", label: site + "sqlconf.php.bak"}, probe{path: site, label: site + " (a listing)", listing: true})
}

// firstFile is a regular file under dir (its path relative to dir) that skip does not refuse,
// reading a few entries of a few levels only: a documents directory may hold millions.
func firstFile(dir string, skip func(rel string) bool) (string, bool) {
	var walk func(rel string, depth int) (string, bool)
	walk = func(rel string, depth int) (string, bool) {
		f, err := os.Open(filepath.Join(dir, rel))
		if err != nil {
			return "", false
		}
		entries, _ := f.ReadDir(64)
		f.Close()
		for _, e := range entries {
			r := path.Join(rel, e.Name())
			switch {
			case skip(r):
			case e.Type().IsRegular():
				return r, true
			case e.IsDir() && depth < 4:
				if found, ok := walk(r, depth+1); ok {
					return found, true
				}
			}
		}
		return "", false
	}
	return walk("", 0)
}
