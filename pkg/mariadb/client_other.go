//go:build !linux

package mariadb

import "os"

// optionFD returns the read end of a pipe holding text (an option file is far smaller than a
// pipe's buffer): outside Linux there is no memfd, and a pipe leaves nothing on disk either.
func optionFD(text []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if _, err := w.Write(text); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
