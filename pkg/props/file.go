package props

import (
	"fmt"
	"os"
	"syscall"

	"github.com/emrkit/emrkit/pkg/fsutil"
)

// File is a properties file loaded from disk together with the owner and mode to keep.
type File struct {
	Path  string
	Doc   *Doc
	mode  os.FileMode
	owner fsutil.Owner
}

// Load reads path. A missing file is reported with the fix.
func Load(path string) (*File, error) {
	data, fi, err := fsutil.ReadFileStat(path, fsutil.TextLimit)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%w; set oscar.properties in the emrkit config to OSCAR's properties file", err)
		}
		return nil, fmt.Errorf("oscar.properties: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return &File{Path: path, Doc: Parse(data), mode: fi.Mode().Perm(), owner: fsutil.Owner{UID: int(st.Uid), GID: int(st.Gid)}}, nil
}

// Save writes the document back atomically with the file's original owner and mode.
func (f *File) Save() error {
	return fsutil.WriteAtomic(f.Path, f.Doc.Bytes(), f.mode, &f.owner)
}
