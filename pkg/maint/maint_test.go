package maint

import "testing"

func TestDecide(t *testing.T) {
	cases := []struct {
		script, action string
		args           []string
		want           Op
	}{
		{"postinst", "configure", nil, Op{Kind: Converge}},
		{"postinst", "configure", []string{"0.1.0"}, Op{Kind: Converge}},
		{"postinst", "abort-upgrade", []string{"0.3.0"}, Op{Kind: Converge}},
		{"postinst", "abort-remove", nil, Op{Kind: Converge}},
		{"prerm", "upgrade", []string{"0.1.0"}, Op{Kind: Downgrade, Version: "0.1.0"}},
		{"prerm", "upgrade", []string{"0.2.0"}, Op{}},
		{"prerm", "upgrade", []string{"0.3.0"}, Op{}},
		{"prerm", "upgrade", []string{"0.2.0~rc1"}, Op{Kind: Downgrade, Version: "0.2.0~rc1"}},
		{"prerm", "remove", nil, Op{}},
		{"prerm", "failed-upgrade", []string{"0.3.0"}, Op{}},
		{"postrm", "purge", nil, Op{Kind: Purge}},
		{"postrm", "remove", nil, Op{}},
		{"postrm", "upgrade", []string{"0.1.0"}, Op{}},
		{"postrm", "disappear", []string{"other", "1"}, Op{}},
		{"postrm", "abort-install", nil, Op{}},
	}
	for _, c := range cases {
		got, err := Decide(c.script, c.action, c.args, "0.2.0")
		if err != nil || got != c.want {
			t.Errorf("%s %s %v: %+v %v, want %+v", c.script, c.action, c.args, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"postinst", "bogus"}, {"postrm", ""}, {"prerm", "upgrade"}} {
		if _, err := Decide(bad[0], bad[1], nil, "0.2.0"); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
