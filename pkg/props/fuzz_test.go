package props

import (
	"maps"
	"strings"
	"testing"
)

// FuzzParse: whatever oscar.properties holds, Parse renders it back byte for byte; a Set of a
// valid key and value reads back after a fresh Parse (as the next run loads the file), leaves
// every other key alone, and is undone exactly as Undo does it; and where the file is plain
// enough for javaProps to model, emrkit reads every key as OSCAR's java.util.Properties does.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample), "TOTP", "1")
	f.Add([]byte(sample), "NEWKEY", "v")
	f.Add([]byte("a=b\r\nc=d\r\n"), "c", "x y")
	f.Add([]byte("# C:\\oscar\\\nTOTP=0\n"), "TOTP", "1")
	f.Add([]byte("TOTP=0\n#\\\nTOTP=0\n"), "TOTP", "1")
	f.Add([]byte("TOTP\n"), "TOTP", "1")
	f.Add([]byte("x=1\\"), "k", "v")
	f.Add([]byte("multi=a\\\n    b"), "multi", "c")
	f.Add([]byte("  PGP_BIN : /usr/bin/gpg\n\tdemographic.export.encryptedOnly\t=\ttrue\n"), "PGP_BIN", "/usr/local/bin/gpg")
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		d := Parse(data)
		if got := d.Bytes(); string(got) != string(data) {
			t.Fatalf("round trip of %q gave %q", data, got)
		}
		if java, ok := javaProps(string(data)); ok {
			agreeWithJava(t, d, java)
		}
		if CheckKey(key) != nil || CheckValue(value) != nil {
			return
		}
		checkSet(t, data, key, value)
	})
}

// checkSet sets key=value as KeyStep.Apply does and undoes it as Undoer.Undo does, each on a
// fresh Parse of the file as saved.
func checkSet(t *testing.T, data []byte, key, value string) {
	d := Parse(data)
	old := keys(d)
	line, present := d.Line(key)
	finalNewline := d.endsWithNewline()
	text := d.Set(key, value)
	out := d.Bytes()
	after := Parse(out)
	if v, ok := after.Get(key); !ok || v != value {
		t.Fatalf("Set(%q, %q) on %q gave %q, which reads %q, %v", key, value, data, out, v, ok)
	}
	if l, _ := after.Line(key); l != text {
		t.Fatalf("Set(%q, %q) on %q returned %q but the line reads %q", key, value, data, text, l)
	}
	want := maps.Clone(old)
	want[key] = value
	if got := keys(after); !maps.Equal(got, want) {
		t.Fatalf("Set(%q, %q) on %q gave %q: keys %q, want %q", key, value, data, out, got, want)
	}
	if java, ok := javaProps(string(data)); ok {
		java[key] = value
		if got, ok := javaProps(string(out)); ok && !maps.Equal(valid(got), valid(java)) {
			t.Fatalf("Set(%q, %q) on %q gave %q: OSCAR reads %q, want %q", key, value, data, out, got, java)
		}
	}
	if present {
		after.Replace(key, line)
	} else {
		after.Remove(key, !finalNewline)
	}
	if undone := after.Bytes(); string(undone) != string(data) {
		t.Fatalf("Set(%q, %q) on %q then undo gave %q", key, value, data, undone)
	}
}

// keys is the value emrkit reads for every key in d.
func keys(d *Doc) map[string]string {
	m := map[string]string{}
	for _, l := range d.lines {
		if l.key != "" {
			m[l.key], _ = d.Get(l.key)
		}
	}
	return m
}

// agreeWithJava checks that every key emrkit could edit reads as OSCAR reads it.
func agreeWithJava(t *testing.T, d *Doc, java map[string]string) {
	t.Helper()
	java = valid(java)
	ours := valid(keys(d))
	if !maps.Equal(ours, java) {
		t.Fatalf("emrkit reads %q, OSCAR %q", ours, java)
	}
}

// valid keeps the keys CheckKey accepts: the only ones emrkit reads or writes.
func valid(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if CheckKey(k) == nil {
			out[k] = v
		}
	}
	return out
}

// javaProps is what java.util.Properties.load reads from s (its line breaks are "\n", "\r\n"
// and "\r"), for the files it can model exactly: no backslash outside comments (no escapes,
// no continuation lines). A comment line never continues. ok is false for other files.
func javaProps(s string) (props map[string]string, ok bool) {
	props = map[string]string{}
	for _, line := range strings.Split(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s), "\n") {
		line = strings.TrimLeft(line, " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		if strings.Contains(line, `\`) {
			return nil, false
		}
		end := strings.IndexAny(line, "=: \t\f")
		if end < 0 {
			props[line] = ""
			continue
		}
		rest := strings.TrimLeft(line[end:], " \t\f")
		if line[end] == '=' || line[end] == ':' {
			rest = strings.TrimLeft(line[end+1:], " \t\f")
		} else if rest != "" && (rest[0] == '=' || rest[0] == ':') {
			rest = strings.TrimLeft(rest[1:], " \t\f")
		}
		props[line[:end]] = rest
	}
	return props, true
}
