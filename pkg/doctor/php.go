package doctor

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/emrkit/emrkit/pkg/phpini"
)

const phpTitle = "PHP under Apache has OpenEMR's limits and safe session cookies, and shows no version or errors"

// phpSwitch is a PHP boolean setting and the value doctor wants it at.
type phpSwitch struct {
	name string
	on   bool
}

// php reads the settings each mod_php loads (php.ini, then conf.d, emrkit's drop-in
// included) and asks the login page whether PHP names itself (X-Powered-By).
func (h *host) php() Check {
	const id = "php.settings"
	dirs, err := h.env.Host.OpenEMR.PHP.SAPIDirs()
	if err != nil {
		return skipped(id, phpTitle, hipaaAccess, err)
	}
	if len(dirs) == 0 {
		return Check{ID: id, Title: phpTitle, Status: Warn, Safeguard: hipaaAccess,
			Finding: "no PHP for Apache's mod_php (/etc/php/*/apache2): a PHP-FPM pool's settings are not checked",
			Fix:     "set OpenEMR's limits and session.* in the pool's php_admin_value lines"}
	}
	var problems []string
	for _, dir := range dirs {
		cur, err := phpini.Effective(dir, "")
		if err != nil {
			return skipped(id, phpTitle, hipaaAccess, err)
		}
		where := filepath.Base(filepath.Dir(dir)) // the PHP version
		for _, l := range phpini.Limits {
			if !phpini.Enough(cur[l.Name], l.Value) {
				problems = append(problems, fmt.Sprintf("%s %s=%q (OpenEMR asks %s)", where, l.Name, cur[l.Name], l.Value))
			}
		}
		want := []phpSwitch{{"session.use_strict_mode", true}, {"session.cookie_httponly", true}, {"expose_php", false}, {"display_errors", false}}
		if h.env.Config.OpenEMR.HTTPSRedirect {
			want = append(want, phpSwitch{"session.cookie_secure", true})
		}
		for _, w := range want {
			if phpini.On(cur[w.name]) != w.on {
				problems = append(problems, fmt.Sprintf("%s %s=%q", where, w.name, cur[w.name]))
			}
		}
		if s := strings.ToLower(cur["session.cookie_samesite"]); s != "lax" && s != "strict" {
			problems = append(problems, fmt.Sprintf("%s session.cookie_samesite=%q", where, cur["session.cookie_samesite"]))
		}
	}
	if st, err := h.site(); err == nil && len(st.ends) > 0 {
		e := st.ends[len(st.ends)-1] // HTTPS when there is one: the page a browser gets
		if resp, err := e.client.Get(e.origin + st.own + "index.php"); err == nil {
			resp.Body.Close()
			if p := resp.Header.Get("X-Powered-By"); p != "" && resp.StatusCode != http.StatusNotFound {
				problems = append(problems, "the login page says X-Powered-By: "+p)
			}
		}
	}
	return check(id, phpTitle, hipaaAccess, len(problems) == 0,
		fmt.Sprintf("%d PHP version(s) for Apache: limits, session cookies, expose_php and display_errors as wanted", len(dirs)),
		strings.Join(problems, "; "), "emrkit apply (conf.d/"+phpini.DropIn+"); expose_php and display_errors Off in php.ini")
}
