package doctor

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/emrkit/emrkit/pkg/openemr"
)

const (
	versionTitle = "Apache names no version (ServerTokens Prod, ServerSignature Off)"
	traceTitle   = "Apache refuses TRACE (TraceEnable Off)"
	headersTitle = "OpenEMR's pages carry the security headers"
	tlsTitle     = "HTTPS offers TLS 1.2 or newer only"
)

// apacheChecks probe Apache's hardening beyond the guide where OpenEMR is served: what an
// error page and the Server header say, TRACE, the response headers, the TLS versions offered.
func (h *host) apacheChecks() []Check {
	st, err := h.site()
	if err != nil || len(st.ends) == 0 {
		if err == nil {
			err = fmt.Errorf("no endpoint to probe: %s", strings.Join(st.problems, "; "))
		}
		return []Check{skipped("apache.version", versionTitle, hipaaRisk, err), skipped("apache.trace", traceTitle, hipaaRisk, err),
			skipped("openemr.headers", headersTitle, hipaaAccess, err), skipped("apache.tls", tlsTitle, hipaaTransmit, err)}
	}
	first := st.ends[0]
	var out []Check

	resp, err := first.client.Get(first.origin + st.own + "emrkit-doctor-no-such-page")
	if err != nil {
		out = append(out, skipped("apache.version", versionTitle, hipaaRisk, err))
	} else {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		server := resp.Header.Get("Server")
		signed := strings.Contains(string(body), "Server at ")
		out = append(out, check("apache.version", versionTitle, hipaaRisk, server == "Apache" && !signed,
			"Server: Apache, and error pages carry no signature",
			fmt.Sprintf("Server: %q; error pages signed: %v (an attacker reads which holes to try)", server, signed), "emrkit apply (zz-emrkit-security)"))
	}

	req, _ := http.NewRequestWithContext(h.ctx, http.MethodTrace, first.origin+st.own, nil)
	if resp, err := first.client.Do(req); err != nil {
		out = append(out, skipped("apache.trace", traceTitle, hipaaRisk, err))
	} else {
		resp.Body.Close()
		out = append(out, check("apache.trace", traceTitle, hipaaRisk, resp.StatusCode != http.StatusOK,
			fmt.Sprintf("TRACE answers %d", resp.StatusCode), "TRACE answers 200: it echoes requests, cookies included", "emrkit apply (zz-emrkit-security)"))
	}

	out = append(out, h.headers(st))
	return append(out, h.tlsVersions(st))
}

// headers reads the login page's response headers where a browser gets it: over HTTPS only
// when plain HTTP is redirected there.
func (h *host) headers(st site) Check {
	redirect := h.env.Config.OpenEMR.HTTPSRedirect
	var missing []string
	var where []string
	for _, e := range st.ends {
		tlsEnd := strings.HasPrefix(e.origin, "https://")
		if redirect && !tlsEnd {
			continue
		}
		resp, err := e.client.Get(e.origin + st.own + "index.php")
		if err != nil {
			return skipped("openemr.headers", headersTitle, hipaaAccess, err)
		}
		resp.Body.Close()
		want := openemr.SecurityHeaders
		if redirect {
			want = append(want[:len(want):len(want)], [2]string{"Strict-Transport-Security", openemr.HSTS})
		}
		for _, hd := range want {
			if got := resp.Header.Get(hd[0]); got != hd[1] {
				missing = append(missing, fmt.Sprintf("%s is %q at %s", hd[0], got, e.origin))
			}
		}
		where = append(where, e.origin+st.own)
	}
	return check("openemr.headers", headersTitle, hipaaAccess, len(missing) == 0,
		"nosniff, Referrer-Policy, X-Frame-Options"+map[bool]string{true: ", HSTS"}[redirect]+" at "+strings.Join(where, ", "),
		strings.Join(missing, "; "), "emrkit apply (zz-emrkit-security, module headers)")
}

// tlsVersions offers TLS 1.1 and older to where HTTPS is served: the handshake must fail, and
// one at TLS 1.2 or newer must succeed (else nothing answers there and nothing is proven).
// Certificates are not checked: the probe sends no request.
func (h *host) tlsVersions(st site) Check {
	const id = "apache.tls"
	addr := ""
	for _, e := range st.ends {
		if strings.HasPrefix(e.origin, "https://") {
			addr = strings.TrimPrefix(e.origin, "https://")
		}
	}
	if addr == "" {
		if openemr.SSLSiteEnabled(h.env.Host.OpenEMR.Apache) != nil {
			return Check{ID: id, Title: tlsTitle, Status: Warn, Safeguard: hipaaTransmit,
				Finding: "Apache has no SSL site enabled: OpenEMR is served over plain HTTP only",
				Fix:     "enable an SSL site with your certificate (a2enmod ssl; a2ensite default-ssl), then openemr.https_redirect: true"}
		}
		addr = st.base.Hostname()
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "443")
	}
	dial := func(max uint16) error {
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		defer cancel()
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: max}
		conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(0); err != nil {
		return skipped(id, tlsTitle, hipaaTransmit, fmt.Errorf("no TLS answers at %s (%v); set openemr.url to OpenEMR's https:// URL", addr, err))
	}
	return check(id, tlsTitle, hipaaTransmit, dial(tls.VersionTLS11) != nil, "TLS 1.1 and older refused at "+addr,
		"TLS 1.1 is accepted at "+addr+" (a site's own SSLProtocol overrides emrkit's: grep -r SSLProtocol /etc/apache2)",
		"emrkit apply (zz-emrkit-security); remove or fix a site's own SSLProtocol")
}
