package props

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/step"
)

// Kind is the journal kind of a properties-key change.
const Kind = "props.key"

// desired is what emrkit wrote: enough to find it again and compare.
type desired struct {
	Path  string `json:"path"`
	Key   string `json:"key"`
	Value string `json:"value"`
	Line  string `json:"line"` // the raw line as emrkit left it
}

// before is the key as emrkit found it.
type before struct {
	Present bool   `json:"present"`
	Line    string `json:"line,omitempty"` // raw last occurrence, restored verbatim
	// FinalNewline records whether the file ended in a line break, since appending a key to
	// a file without one adds it.
	FinalNewline bool `json:"final_newline"`
}

// KeyStep makes Key=Value the setting OSCAR reads from the properties file at Path.
type KeyStep struct {
	Path, Key, Value string
	SinceVersion     string
}

func (k KeyStep) Kind() string     { return Kind }
func (k KeyStep) Target() string   { return k.Path + "#" + k.Key }
func (k KeyStep) ID() string       { return Kind + ":" + k.Target() }
func (k KeyStep) Since() string    { return k.SinceVersion }
func (k KeyStep) Describe() string { return fmt.Sprintf("set %s=%s in %s", k.Key, k.Value, k.Path) }

// Validate rejects keys and values a properties file cannot hold verbatim.
func (k KeyStep) Validate() error {
	if err := CheckKey(k.Key); err != nil {
		return err
	}
	return CheckValue(k.Value)
}

// Preflight checks that the properties file is there and readable.
func (k KeyStep) Preflight(context.Context) error {
	_, err := Load(k.Path)
	return err
}

func (k KeyStep) Check(context.Context) (bool, error) {
	f, err := Load(k.Path)
	if err != nil {
		return false, err
	}
	v, ok := f.Doc.Get(k.Key)
	return ok && v == k.Value, nil
}

func (k KeyStep) Capture(context.Context) (json.RawMessage, json.RawMessage, error) {
	f, err := Load(k.Path)
	if err != nil {
		return nil, nil, err
	}
	line, present := f.Doc.Line(k.Key)
	b := before{Present: present, Line: line, FinalNewline: f.Doc.endsWithNewline()}
	text := Parse(f.Doc.Bytes()).Set(k.Key, k.Value)
	return marshal(desired{Path: k.Path, Key: k.Key, Value: k.Value, Line: text}, b)
}

func marshal(d desired, b before) (json.RawMessage, json.RawMessage, error) {
	dj, err := json.Marshal(d)
	if err != nil {
		return nil, nil, err
	}
	bj, err := json.Marshal(b)
	return dj, bj, err
}

func (k KeyStep) Apply(context.Context, json.RawMessage) error {
	f, err := Load(k.Path)
	if err != nil {
		return err
	}
	if v, ok := f.Doc.Get(k.Key); ok && v == k.Value {
		return nil
	}
	f.Doc.Set(k.Key, k.Value)
	return f.Save()
}

// Undoer reverses props.key entries.
type Undoer struct{}

func decode(e journal.Entry) (desired, before, error) {
	return journal.Decode[desired, before](e)
}

// Undo puts back the line emrkit found, or removes the line it added, only while the key's
// last occurrence still reads exactly as emrkit left it.
func (Undoer) Undo(_ context.Context, e journal.Entry) (step.Outcome, string, error) {
	d, b, err := decode(e)
	if err != nil {
		return 0, "", err
	}
	f, err := Load(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return step.Skipped, d.Path + " no longer exists", nil
	}
	if errors.Is(err, fsutil.ErrNotRegular) {
		return step.Kept, d.Path + " was replaced by a link or a special file since emrkit edited it", nil
	}
	if err != nil {
		return 0, "", err
	}
	cur, ok := f.Doc.Line(d.Key)
	switch {
	case ok && cur == d.Line:
	case !ok && !b.Present, ok && b.Present && cur == b.Line:
		return step.AlreadyBefore, "", nil
	case !ok:
		return step.Kept, fmt.Sprintf("%s was removed from %s since", d.Key, d.Path), nil
	default:
		return step.Kept, fmt.Sprintf("%s now reads %q", d.Path, cur), nil
	}
	if b.Present {
		f.Doc.Replace(d.Key, b.Line)
	} else {
		f.Doc.Remove(d.Key, !b.FinalNewline)
	}
	if err := f.Save(); err != nil {
		return 0, "", err
	}
	return step.Restored, "", nil
}

// Holds reports whether OSCAR still reads the value emrkit wrote.
func (Undoer) Holds(_ context.Context, e journal.Entry) (bool, error) {
	d, _, err := decode(e)
	if err != nil {
		return false, err
	}
	f, err := Load(d.Path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fsutil.ErrNotRegular) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	v, ok := f.Doc.Get(d.Key)
	return ok && v == d.Value, nil
}
