package config

import (
	"reflect"
	"strings"
	"testing"
)

// maxErrorLen bounds a config error: it names the file, a key and what fits, and quotes at
// most a short value.
const maxErrorLen = 480

// FuzzParse: whatever /etc/emrkit/emrkit.yaml holds, Parse returns a valid Config or one
// bounded line, never a panic; a Config it accepts, rendered as Write writes it, parses to the
// same Config.
func FuzzParse(f *testing.F) {
	def, err := render(Default())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def)
	f.Add([]byte("profile: openemr\nopenemr: {root: /var/www/openemr, site: default, https_redirect: true, password_policy: {gbl_minimum_password_length: 14}}\n"))
	f.Add([]byte("firewall: {https_port: \" 8443 \", deny: [3306, abc], allow_from: [10.0.0.0/8, 2001:db8::/32]}\n"))
	f.Add([]byte("profile: openemr\nportal:\n  enable: true\n  tables: [patient_data]\n  tunnel: {host: portal.example, user: tunnel-clinic1, port: 2222,\n    host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"}\n  replica: {enable: true, port: 3307, remote_port: 13307}\n"))
	f.Add([]byte("backup: {keep: 0, schedule: \"30 2 * * *\"}\nmigrations: [utf8mb4]\npaths: {pgp_passphrase_file: /etc/emrkit/pgp.pass}\n"))
	f.Add([]byte("database: &d {name: oscar_15}\noscar: *d\n"))
	f.Add([]byte("totp: {users: [oscardoc, \"o'brien\"]}\n---\nprofile: plone\n"))
	f.Add([]byte("\t- : [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(DefaultPath, data)
		if err != nil {
			if msg := err.Error(); len(msg) > maxErrorLen || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("%q: a %d-byte error: %q", data, len(msg), msg)
			}
			return
		}
		out, err := render(c)
		if err != nil {
			t.Fatalf("%q parses but does not render: %v", data, err)
		}
		again, err := Parse(DefaultPath, out)
		if err != nil {
			t.Fatalf("%q rendered as %q does not parse: %v", data, out, err)
		}
		if a, b := canonical(c), canonical(again); !reflect.DeepEqual(a, b) {
			t.Fatalf("%q rendered as %q reads differently:\n%+v\n%+v", data, out, a, b)
		}
	})
}

// canonical drops what a Config does not mean: the source text of ports (error messages only)
// and the difference between a missing and an empty list.
func canonical(c Config) Config {
	normalize(reflect.ValueOf(&c).Elem())
	return c
}

func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if p, ok := v.Addr().Interface().(*Port); ok {
			p.raw = ""
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalize(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			normalize(v.Elem())
		}
	}
}
