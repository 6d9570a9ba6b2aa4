package fsutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SaveRecord writes v as indented JSON to name in stateDir (0700, created when missing), mode
// 0600: emrkit's records of its last runs, read back by doctor.
func SaveRecord(stateDir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return WriteAtomic(filepath.Join(stateDir, name), append(data, '\n'), 0o600, nil)
}

// LoadRecord reads the record name in stateDir into v; false when there is none yet. A record
// that does not parse is an error naming it.
func LoadRecord(stateDir, name string, v any) (bool, error) {
	data, err := ReadFile(filepath.Join(stateDir, name), TextLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s is corrupt: %w", name, err)
	}
	return true, nil
}
