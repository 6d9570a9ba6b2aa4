package openemr

import (
	"fmt"
	"regexp"
	"strings"
)

// Scripts are OpenEMR's setup and upgrade entry points, relative to the root. The first six
// are in every release since 7.0 (sql_upgrade.php, sql_patch.php, acl_upgrade.php and
// ippf_upgrade.php run without a login); the last three come from 4.x/5.x and may survive
// an upgrade done by hand.
var Scripts = []string{
	"admin.php", "setup.php", "sql_upgrade.php", "sql_patch.php", "acl_upgrade.php", "ippf_upgrade.php",
	"acl_setup.php", "gacl/setup.php", "sl_convert.php",
}

// NotServed are paths of the tree that OpenEMR never loads over the web and that say too much
// when served (regular expressions, relative to the root): dependency manifests, environment
// files, the SQL the installer reads, tests, the docker recipes, the changelog, 4.x's bundled
// phpMyAdmin and a checkout's VCS directory. Documentation/help_files/ stays: OpenEMR's
// screens load their help from it.
var NotServed = []string{
	`(composer|package)\.json`, `(composer\.lock|package-lock\.json)`, `\.env[^/]*`, `(sql|tests|docker|ci|phpmyadmin)(/|$)`,
	`\.(git|svn|hg)(/|$)`, `CHANGELOG\.md`, `Documentation/(?!help_files/)`,
}

// backupCopy matches the copies editors and admins leave beside a file (sqlconf.php.bak is
// served as text, $pass and all): anywhere in the tree.
const backupCopy = `(\.(bak|orig|old|save|swp|swo)|~)$`

// ContribServed are the contrib/ directories OpenEMR's code-set imports load over the web.
var ContribServed = []string{"icd9", "icd10", "snomed", "rxnorm"}

// ConfName is emrkit's snippet in Apache's conf-available.
const ConfName = "emrkit-openemr"

// Roots are the paths Apache may map the tree's URLs to: Root and, when it is a link, the
// directory it resolves to.
func (in Install) Roots() []string {
	if in.Resolved == "" || in.Resolved == in.Root {
		return []string{in.Root}
	}
	return []string{in.Root, in.Resolved}
}

// ApacheConf is the snippet for the tree at roots (its path and, behind a link, its real
// path: Apache serves the real directory by its own URL too). Every deny is one <If> on the
// file the request maps to, inside the tree's <Directory>: <If> sections merge last, so no
// <Location> or .htaccess of the site grants them back, and matching the file (not the URL)
// leaves nothing to path tricks (//, /./, %73etup.php, setup.php/x). Satisfy All, in the
// same <If>, keeps a legacy "Order allow,deny / Allow from all / Satisfy Any" block of the
// site from granting them anyway. The portal, apis/ and oauth2/ keep their own .htaccess
// rewrites. With redirect, plain HTTP to the tree is sent to HTTPS, in the <ElseIf> of the
// deny, so a denied file answers 403 on plain HTTP too (a server-level redirect ran first,
// and answered 301).
func ApacheConf(roots []string, redirect bool) []byte {
	var scripts []string
	for _, s := range Scripts {
		scripts = append(scripts, regexp.QuoteMeta(strings.TrimSuffix(s, ".php")))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by emrkit: OpenEMR hardening (\"Securing OpenEMR\"). `emrkit revert --all` removes it;\n")
	fmt.Fprintf(&b, "# edits here are kept by emrkit's undo.\n")
	for _, root := range roots {
		q := regexp.QuoteMeta(root)
		denied := []string{
			fmt.Sprintf("%%{REQUEST_FILENAME} =~ m#^%s/sites/[^/]+/((documents|era|edi)(/|$)|sqlconf\\.php$)#", q),
			fmt.Sprintf("%%{REQUEST_FILENAME} =~ m#^%s/(%s)\\.php$#", q, strings.Join(scripts, "|")),
			fmt.Sprintf("%%{REQUEST_FILENAME} =~ m#^%s/contrib(/|$)# && ! %%{REQUEST_FILENAME} =~ m#^%s/contrib/(%s)(/|$)#",
				q, q, strings.Join(ContribServed, "|")),
			fmt.Sprintf("%%{REQUEST_FILENAME} =~ m#^%s/(%s)#", q, strings.Join(NotServed, "|")),
			fmt.Sprintf("%%{REQUEST_FILENAME} =~ m#^%s/.*%s#", q, backupCopy),
		}
		fmt.Fprintf(&b, "<Directory \"%s\">\n", root)
		fmt.Fprintf(&b, "\t# No directory listings (sites/default/ listed sqlconf.php and documents/).\n")
		fmt.Fprintf(&b, "\t<If \"-d %%{REQUEST_FILENAME}\">\n\t\tOptions -Indexes\n\t</If>\n")
		fmt.Fprintf(&b, "\t# Patient documents, EDI/ERA files, each site's sqlconf.php; the setup and upgrade scripts\n")
		fmt.Fprintf(&b, "\t# (several run without a login); contrib/, but for the code sets OpenEMR loads from it;\n")
		fmt.Fprintf(&b, "\t# what OpenEMR never serves (manifests, .env, sql/, tests/, ...) and backup copies (*.bak, *~).\n")
		fmt.Fprintf(&b, "\t<If \"(%s)\">\n\t\tRequire all denied\n", strings.Join(denied, ") || ("))
		fmt.Fprintf(&b, "\t\t<IfModule mod_access_compat.c>\n\t\t\tSatisfy All\n\t\t</IfModule>\n\t</If>\n")
		if redirect {
			fmt.Fprintf(&b, "\t# Plain HTTP goes to HTTPS, but for certbot's challenges (a tree that is the document root).\n")
			fmt.Fprintf(&b, "\t<ElseIf \"%%{HTTPS} != 'on' && ! %%{REQUEST_URI} =~ m#^/\\.well-known/acme-challenge/#\">\n\t\tRedirect permanent \"https://%%{HTTP_HOST}%%{REQUEST_URI}\"\n\t</ElseIf>\n")
		}
		fmt.Fprintf(&b, "</Directory>\n")
	}
	return []byte(b.String())
}

// SecurityConfName is emrkit's server-wide snippet. Apache reads conf-enabled in name order
// and the last ServerTokens wins: Debian's security.conf sets "ServerTokens OS", so this one
// must come after it.
const SecurityConfName = "zz-emrkit-security"

// HeadersModule is the module the response headers need; Debian does not enable it.
const HeadersModule = "headers"

// SecurityHeaders are the response headers on the tree's paths, and their values. OpenEMR
// frames its own pages (SAMEORIGIN keeps them working and stops another site framing the
// login); same-origin keeps URLs with patient ids out of other sites' Referer.
var SecurityHeaders = [][2]string{
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "same-origin"},
	{"X-Frame-Options", "SAMEORIGIN"},
}

// HSTS is the Strict-Transport-Security value, sent over HTTPS when openemr.https_redirect is
// on: it binds the whole host name to HTTPS in browsers, so only an admin who sent HTTP to
// HTTPS has said that is right.
const HSTS = "max-age=31536000"

// SecurityConf is the server-wide hardening beyond "Securing OpenEMR": no version in the
// Server header or on error pages, no TRACE, TLS 1.2 and 1.3 only (a vhost's own SSLProtocol
// still wins; doctor probes what is served), and the response headers on every root of the
// tree. Each part sits in an <IfModule>, so the snippet never breaks a configuration that
// lacks the module.
func SecurityConf(roots []string, hsts bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by emrkit: Apache hardening for OpenEMR. `emrkit revert --all` removes it;\n")
	fmt.Fprintf(&b, "# edits here are kept by emrkit's undo.\n")
	fmt.Fprintf(&b, "ServerTokens Prod\nServerSignature Off\nTraceEnable Off\n")
	fmt.Fprintf(&b, "<IfModule mod_ssl.c>\n\tSSLProtocol -all +TLSv1.2 +TLSv1.3\n</IfModule>\n")
	fmt.Fprintf(&b, "<IfModule mod_headers.c>\n")
	for _, root := range roots {
		fmt.Fprintf(&b, "\t<Directory \"%s\">\n", root)
		for _, h := range SecurityHeaders {
			fmt.Fprintf(&b, "\t\tHeader always set %s \"%s\"\n", h[0], h[1])
		}
		if hsts {
			fmt.Fprintf(&b, "\t\tHeader always set Strict-Transport-Security \"%s\" \"expr=%%{HTTPS} == 'on'\"\n", HSTS)
		}
		fmt.Fprintf(&b, "\t</Directory>\n")
	}
	fmt.Fprintf(&b, "</IfModule>\n")
	return []byte(b.String())
}
