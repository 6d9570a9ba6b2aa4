package maint

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emrkit/emrkit/pkg/config"
)

// Question ties a debconf template to the configuration key it sets.
type Question struct {
	Name string // template, e.g. "emrkit/https-port"
	Key  string // config key, e.g. "firewall.https_port"
	get  func(c config.Config) string
	set  func(c *config.Config, v string) error
}

// Questions are the debconf templates of design section 5, in the order asked.
var Questions = []Question{
	{"emrkit/profile", "profile",
		func(c config.Config) string { return c.Profile },
		func(c *config.Config, v string) error { c.Profile = v; return nil }},
	{"emrkit/database", "database.name",
		func(c config.Config) string { return c.Database.Name },
		func(c *config.Config, v string) error { c.Database.Name = v; return nil }},
	{"emrkit/totp-users", "totp.users",
		func(c config.Config) string { return strings.Join(c.TOTP.Users, " ") },
		func(c *config.Config, v string) error { c.TOTP.Users = splitList(v); return nil }},
	{"emrkit/pgp-mode", "pgp.mode",
		func(c config.Config) string { return c.PGP.Mode },
		func(c *config.Config, v string) error { c.PGP.Mode = v; return nil }},
	{"emrkit/pgp-uid", "pgp.uid",
		func(c config.Config) string { return c.PGP.UID },
		func(c *config.Config, v string) error { c.PGP.UID = v; return nil }},
	{"emrkit/pgp-public-key", "pgp.public_key",
		func(c config.Config) string { return c.PGP.PublicKey },
		func(c *config.Config, v string) error { c.PGP.PublicKey = v; return nil }},
	{"emrkit/firewall", "firewall.enable",
		func(c config.Config) string { return strconv.FormatBool(c.Firewall.Enable) },
		func(c *config.Config, v string) error { return setBool(&c.Firewall.Enable, v) }},
	{"emrkit/https-port", "firewall.https_port",
		func(c config.Config) string { return portText(c.Firewall.HTTPSPort) },
		func(c *config.Config, v string) error { return setPort(&c.Firewall.HTTPSPort, v, false) }},
	{"emrkit/ssh-port", "firewall.ssh_port",
		func(c config.Config) string { return portText(c.Firewall.SSHPort) },
		func(c *config.Config, v string) error { return setPort(&c.Firewall.SSHPort, v, true) }},
	{"emrkit/openemr-root", "openemr.root",
		func(c config.Config) string { return c.OpenEMR.Root },
		func(c *config.Config, v string) error { c.OpenEMR.Root = strings.TrimSpace(v); return nil }},
	{"emrkit/openemr-site", "openemr.site",
		func(c config.Config) string { return c.OpenEMR.SiteName() },
		func(c *config.Config, v string) error {
			// The default stays out of the file (an older release's loader does not know the key).
			if v = strings.TrimSpace(v); v == config.DefaultOpenEMRSite {
				v = ""
			}
			c.OpenEMR.Site = v
			return nil
		}},
	{"emrkit/backup-schedule", "backup.schedule",
		func(c config.Config) string {
			if c.Backup.Schedule == "" {
				return config.DefaultSchedule
			}
			return c.Backup.Schedule
		},
		func(c *config.Config, v string) error {
			// The default stays out of the file (an older release's loader does not know the key).
			if v = strings.Join(strings.Fields(v), " "); v == config.DefaultSchedule {
				v = ""
			}
			c.Backup.Schedule = v
			return nil
		}},
	{"emrkit/portal", "portal.enable",
		func(c config.Config) string { return strconv.FormatBool(c.Portal.Enable) },
		func(c *config.Config, v string) error { return setBool(&c.Portal.Enable, v) }},
	{"emrkit/portal-host", "portal.tunnel.host",
		func(c config.Config) string {
			t := c.Portal.Tunnel
			if t.Host == "" || t.SSHPort() == config.DefaultPortalSSHPort {
				return t.Host
			}
			return net.JoinHostPort(t.Host, strconv.Itoa(t.SSHPort()))
		},
		func(c *config.Config, v string) error {
			host, port := strings.TrimSpace(v), config.Port{}
			if h, p, err := net.SplitHostPort(host); err == nil {
				host = h
				if err := setPort(&port, p, false); err != nil {
					return err
				}
			}
			c.Portal.Tunnel.Host, c.Portal.Tunnel.Port = host, port
			return nil
		}},
	{"emrkit/portal-user", "portal.tunnel.user",
		func(c config.Config) string { return c.Portal.Tunnel.User },
		func(c *config.Config, v string) error { c.Portal.Tunnel.User = strings.TrimSpace(v); return nil }},
	{"emrkit/portal-host-key", "portal.tunnel.host_key",
		func(c config.Config) string { return c.Portal.Tunnel.HostKey },
		func(c *config.Config, v string) error {
			c.Portal.Tunnel.HostKey = strings.Join(strings.Fields(v), " ")
			return nil
		}},
	{"emrkit/portal-remote-port", "portal.tunnel.remote_port",
		func(c config.Config) string { return strconv.Itoa(c.Portal.Tunnel.Remote()) },
		func(c *config.Config, v string) error {
			// The default stays out of the file, like every key an older release lacks.
			if strings.TrimSpace(v) == strconv.Itoa(config.DefaultPortalRemotePort) {
				c.Portal.Tunnel.RemotePort = config.Port{}
				return nil
			}
			return setPort(&c.Portal.Tunnel.RemotePort, v, false)
		}},
	{"emrkit/portal-replica", "portal.replica.enable",
		func(c config.Config) string { return strconv.FormatBool(c.Portal.Replica.Enable) },
		func(c *config.Config, v string) error { return setBool(&c.Portal.Replica.Enable, v) }},
	{"emrkit/migrations", "migrations",
		func(c config.Config) string { return strings.Join(c.Migrations, ", ") },
		func(c *config.Config, v string) error { c.Migrations = splitList(v); return nil }},
}

// splitList reads debconf's "a, b" (multiselect) and the space/comma lists admins type.
func splitList(v string) []string {
	out := []string{}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		out = append(out, f)
	}
	return out
}

func setBool(b *bool, v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*b = x
	return nil
}

func portText(p config.Port) string {
	if p.N == 0 {
		return ""
	}
	return strconv.Itoa(p.N)
}

func setPort(p *config.Port, v string, emptyOK bool) error {
	v = strings.TrimSpace(v)
	if v == "" && emptyOK {
		*p = config.P(0)
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q is not a port (1-65535)", v)
	}
	*p = config.P(n)
	return nil
}

// Merge builds the configuration from debconf answers over cfg (the file as it is). last holds
// the answers the package wrote into the file the previous time: where the file's value
// differs from it, the admin edited the file by hand, and that edit wins over debconf (Debian
// Policy 10.7.3: the package must not overwrite local changes). The returned map holds the
// values debconf must be told (the admin's edits), and the answers now in the file.
func Merge(cfg config.Config, answers, last map[string]string) (config.Config, map[string]string, map[string]string, error) {
	resync := map[string]string{}
	written := map[string]string{}
	for _, q := range Questions {
		fileVal := q.get(cfg)
		v, asked := answers[q.Name]
		if prev, ok := last[q.Name]; ok && prev != fileVal {
			resync[q.Name] = fileVal
			written[q.Name] = fileVal
			continue
		}
		if !asked {
			written[q.Name] = fileVal
			continue
		}
		if err := q.set(&cfg, v); err != nil {
			return cfg, nil, nil, fmt.Errorf("%s: %w; preseed a valid answer or run `dpkg-reconfigure emrkit`", q.Name, err)
		}
		written[q.Name] = q.get(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, fmt.Errorf("%s; fix the answer with `dpkg-reconfigure emrkit`", withQuestion(err))
	}
	return cfg, resync, written, nil
}

// withQuestion names the debconf question behind a config key in a validation error.
func withQuestion(err error) string {
	msg := err.Error()
	for _, q := range Questions {
		if strings.HasPrefix(msg, q.Key+":") || strings.HasPrefix(msg, q.Key+"[") {
			return q.Name + " (" + msg + ")"
		}
	}
	return msg
}
