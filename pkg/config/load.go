package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// MaxFileSize bounds the configuration file. The package writes about 1 KiB; a file a
// thousand times that is not a configuration, and is refused before a byte is parsed (a
// 150 MB file used to cost 915 MB of memory in the YAML decoder).
const MaxFileSize = 1 << 20

// Load reads path over the defaults and validates it. A missing file at the default path
// yields the defaults (a fresh host); a missing file named explicitly is an error. The file is
// read without following a symbolic link and only if it is a regular file of at most
// MaxFileSize bytes.
func Load(path string, explicit bool) (Config, error) {
	data, err := fsutil.ReadFile(path, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return Default(), nil
	}
	if err != nil {
		return Default(), fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (the file name) over the defaults and validates it. A file without a
// single setting is an error, not the defaults: an empty file where the package's was is a
// truncated or wrongly edited one, and silently meaning "firewall on, the host's own paths"
// is how a server gets a configuration nobody chose.
func Parse(name string, data []byte) (Config, error) {
	cfg := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %s; fix the file's YAML (keys are listed in the README)", name, oneLine(err))
	}
	// A second document ("---" and more settings) would be ignored without a word; an empty
	// one (a trailing ---) holds nothing to ignore.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cfg, fmt.Errorf("config %s: %s; fix the file's YAML (keys are listed in the README)", name, oneLine(err))
		}
		if !isEmpty(&next) {
			return cfg, fmt.Errorf("config %s:%d: a second YAML document (after ---); emrkit reads one: merge its settings into the first and remove the ---", name, next.Content[0].Line)
		}
	}
	if isEmpty(&doc) {
		return cfg, fmt.Errorf("config %s holds no settings (it is empty or only comments); write the settings into it (dpkg-reconfigure emrkit does) or delete it to use the defaults", name)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return cfg, fmt.Errorf("config %s:%d: the file must be a map of settings (key: value), not a %s", name, root.Line, kindName(root.Kind))
	}
	if unknown := unknownKeys(root, reflect.TypeOf(cfg), ""); len(unknown) > 0 {
		return cfg, fmt.Errorf("config %s:%d: unknown key %s; fix or remove it (keys are listed in the README)", name, unknown[0].line, keyText(unknown[0].key))
	}
	if err := root.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %s; fix the file's YAML (keys are listed in the README)", name, oneLine(err))
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// isEmpty reports whether a document node holds nothing (no content, or only null).
func isEmpty(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || doc.Content[0].Tag == "!!null"
}

// shown is a value from the file as an error shows it (%q, or %s for a path already checked):
// at most shownLen bytes, so a pasted page or a binary blob does not become the message.
type shown string

const shownLen = 64

func (v shown) String() string {
	if len(v) <= shownLen {
		return string(v)
	}
	i := shownLen
	for i > 0 && !utf8.RuneStart(v[i]) {
		i--
	}
	return string(v[:i]) + "…"
}

func oneLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// plainKey is what a dotted key of the configuration looks like; any other is quoted.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_.\[\]-]+$`)

// keyText is key as an error names it: as is when it looks like a key, else quoted and cut
// (a key can hold a line break or a pasted page).
func keyText(key string) string {
	if len(key) <= shownLen && plainKey.MatchString(key) {
		return key
	}
	return fmt.Sprintf("%q", shown(key))
}

// keyAt is a key the configuration does not have, dotted from the root, and its line.
type keyAt struct {
	key  string
	line int
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// unknownKeys walks a mapping node beside the struct type it decodes into and returns every
// key the type lacks, so the error names "firewall.alow_from" at its line where the decoder
// would say only "field alow_from not found in type config.Firewall".
func unknownKeys(n *yaml.Node, t reflect.Type, prefix string) []keyAt {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch {
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		var out []keyAt
		for i, item := range n.Content {
			out = append(out, unknownKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", prefix, i))...)
		}
		return out
	case t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode:
		return nil // a wrong shape is the decoder's error, which names the line
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	var out []keyAt
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + key
		}
		ft, ok := fields[k.Value]
		if !ok {
			out = append(out, keyAt{key: key, line: k.Line})
			continue
		}
		out = append(out, unknownKeys(v, ft, key)...)
	}
	return out
}
