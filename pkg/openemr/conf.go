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

// ContribServed are the contrib/ directories OpenEMR's code-set imports load over the web.
var ContribServed = []string{"icd9", "icd10", "snomed", "rxnorm"}

// ConfName is emrkit's snippet in Apache's conf-available.
const ConfName = "emrkit-openemr"

// ApacheConf is the snippet for the tree at root. Every deny is an <If> on the file the
// request maps to, inside the tree's <Directory>: <If> sections merge last, so no <Location>
// or .htaccess of the site grants them back, and matching the file (not the URL) leaves
// nothing to path tricks (//, /./, %73etup.php, setup.php/x). The portal, apis/ and oauth2/
// keep their own .htaccess rewrites. With redirect, plain HTTP is sent to HTTPS (but for
// certbot's challenges).
func ApacheConf(root string, redirect bool) []byte {
	q := regexp.QuoteMeta(root)
	var scripts []string
	for _, s := range Scripts {
		scripts = append(scripts, regexp.QuoteMeta(strings.TrimSuffix(s, ".php")))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by emrkit: OpenEMR hardening (\"Securing OpenEMR\"). `emrkit revert --all` removes it;\n")
	fmt.Fprintf(&b, "# edits here are kept by emrkit's undo.\n")
	fmt.Fprintf(&b, "<Directory \"%s\">\n", root)
	fmt.Fprintf(&b, "\t# Patient documents, EDI/ERA files and each site's database settings.\n")
	fmt.Fprintf(&b, "\t<If \"%%{REQUEST_FILENAME} =~ m#^%s/sites/[^/]+/((documents|era|edi)(/|$)|sqlconf\\.php$)#\">\n\t\tRequire all denied\n\t</If>\n", q)
	fmt.Fprintf(&b, "\t# Setup and upgrade scripts (several run without a login).\n")
	fmt.Fprintf(&b, "\t<If \"%%{REQUEST_FILENAME} =~ m#^%s/(%s)\\.php$#\">\n\t\tRequire all denied\n\t</If>\n", q, strings.Join(scripts, "|"))
	fmt.Fprintf(&b, "\t# contrib/, but for the code sets OpenEMR loads from it.\n")
	fmt.Fprintf(&b, "\t<If \"%%{REQUEST_FILENAME} =~ m#^%s/contrib(/|$)# && ! %%{REQUEST_FILENAME} =~ m#^%s/contrib/(%s)(/|$)#\">\n\t\tRequire all denied\n\t</If>\n",
		q, q, strings.Join(ContribServed, "|"))
	fmt.Fprintf(&b, "</Directory>\n")
	if redirect {
		fmt.Fprintf(&b, "# Plain HTTP goes to HTTPS, but for certbot's challenges.\n")
		fmt.Fprintf(&b, "<If \"%%{HTTPS} != 'on' && ! %%{REQUEST_URI} =~ m#^/\\.well-known/acme-challenge/#\">\n")
		fmt.Fprintf(&b, "\tRedirect permanent \"https://%%{HTTP_HOST}%%{REQUEST_URI}\"\n</If>\n")
	}
	return []byte(b.String())
}
