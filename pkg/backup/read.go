package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	gzip "github.com/klauspost/compress/gzip"

	"github.com/emrkit/emrkit/pkg/fsutil"
	"github.com/emrkit/emrkit/pkg/redact"
)

// ErrNeedKey is returned for an encrypted backup when no private key was given.
var ErrNeedKey = errors.New("the backup is encrypted; give the export private key (--key FILE, and --passphrase-file FILE if it has a passphrase)")

// DamagedError says a backup cannot be restored as it is — why, and where (line and byte
// offset of its SQL, and the table there) — and never what the data there was: messages of
// emrkit about a clinic's backups go to terminals, logs, the restore-test record and doctor.
type DamagedError struct {
	File   string
	Reason string
	// Line and Offset are where in the SQL (0: before it, or unknown).
	Line, Offset int64
	Table        string
}

func (e *DamagedError) Error() string {
	msg := "backup " + e.File + " is damaged: " + e.Reason
	if e.Line > 0 {
		msg += fmt.Sprintf(" (line %d, byte %d of its SQL", e.Line, e.Offset)
		if e.Table != "" {
			msg += ", table " + e.Table
		}
		msg += ")"
	}
	return redact.Line(msg)
}

// Format is what a backup file holds, from its first bytes.
type Format int

const (
	// Gzip is a plain backup: a gzip-compressed dump.
	Gzip Format = iota
	// OpenPGP is an encrypted backup, binary or armored.
	OpenPGP
)

// Sniff reads what path holds from its first bytes. An empty file, and one that is neither
// gzip nor an OpenPGP message, are a *DamagedError.
func Sniff(path string) (Format, error) {
	f, err := fsutil.OpenThroughLink(path)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	head := make([]byte, 64)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("backup %s: %w", path, err)
	}
	return sniff(path, head[:n])
}

func sniff(path string, head []byte) (Format, error) {
	switch {
	case len(head) == 0:
		return 0, &DamagedError{File: path, Reason: "the file is empty (0 bytes); take a new backup with emrkit backup"}
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip, nil
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN PGP MESSAGE-----")):
		return OpenPGP, nil
	case encryptedPacket(head[0]):
		return OpenPGP, nil
	}
	return 0, &DamagedError{File: path, Reason: "it is neither a gzip-compressed dump nor an OpenPGP message, so not a backup emrkit wrote"}
}

// encryptedPacket reports whether b opens an OpenPGP packet that starts an encrypted message
// (RFC 4880 4.2): a public-key (tag 1) or symmetric-key (tag 3) encrypted session key.
func encryptedPacket(b byte) bool {
	if b&0x80 == 0 {
		return false
	}
	tag := b & 0x3f // new format
	if b&0x40 == 0 {
		tag = (b >> 2) & 0x0f // old format
	}
	return tag == 1 || tag == 3
}

// OpenSQL returns the SQL a backup holds, decrypting (with keys) and decompressing as it is
// read. Only reading to the end verifies it (the OpenPGP MDC, gzip's CRC): see Verify.
func OpenSQL(path string, keys openpgp.EntityList) (io.ReadCloser, error) {
	f, err := fsutil.OpenThroughLink(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(64)
	format, err := sniff(path, head)
	if err != nil {
		f.Close()
		return nil, err
	}
	var compressed io.Reader = br
	if format == OpenPGP {
		if len(keys) == 0 {
			f.Close()
			return nil, ErrNeedKey
		}
		var r io.Reader = br
		if !encryptedPacket(head[0]) { // armored
			block, err := armor.Decode(br)
			if err != nil {
				f.Close()
				return nil, &DamagedError{File: path, Reason: "its OpenPGP armor is broken: " + err.Error()}
			}
			r = block.Body
		}
		md, err := openpgp.ReadMessage(r, keys, nil, pgpConfig())
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("backup %s: cannot decrypt (%v); is it encrypted to this key?", path, redact.Line(err.Error()))
		}
		compressed = md.UnverifiedBody
	}
	zr, err := gzip.NewReader(compressed)
	if err != nil {
		f.Close()
		return nil, &DamagedError{File: path, Reason: "it is not a gzip-compressed dump (" + err.Error() + ")"}
	}
	return &sqlReader{Reader: zr, close: f.Close}, nil
}

type sqlReader struct {
	io.Reader
	close func() error
}

func (r *sqlReader) Close() error { return r.close() }

// ErrInterrupted is returned when a read of a backup was stopped (SIGTERM, Ctrl-C): the
// backup was not judged.
var ErrInterrupted = errors.New("interrupted")

// stream reads the SQL of file from r through sc until the end, and checks it ends as a
// complete dump does. A read failure, a refused statement or a cut dump is a *DamagedError
// saying where; a cancelled ctx is ErrInterrupted; an error sc's receiver returns (a
// statement the server refused) is that error.
func stream(ctx context.Context, file string, r io.Reader, sc *Scanner) (int64, error) {
	chunks, done := readAhead(r)
	defer done()
	var total int64
	for {
		if ctx.Err() != nil {
			return total, ErrInterrupted
		}
		c, ok := <-chunks
		if !ok {
			break
		}
		if len(c.data) > 0 {
			total += int64(len(c.data))
			_, serr := sc.Write(c.data)
			c.release()
			if serr != nil {
				var d *DamagedError
				if errors.As(serr, &d) {
					d.File = file
				}
				return total, serr
			}
		}
		if c.err != nil {
			if ctx.Err() != nil {
				return total, ErrInterrupted
			}
			line, off := sc.Position()
			return total, &DamagedError{File: file, Reason: readProblem(c.err), Line: line, Offset: off, Table: sc.TableAt(line)}
		}
	}
	if !sc.Completed() {
		line, off := sc.Position()
		return total, &DamagedError{File: file, Reason: fmt.Sprintf("it is cut: it does not end with mariadb-dump's %q line", dumpCompleted),
			Line: line, Offset: off, Table: sc.TableAt(line)}
	}
	return total, nil
}

// chunk is what one read of readAhead's got: bytes (release hands their buffer back), then
// possibly the error that ended the reading (never io.EOF).
type chunk struct {
	data    []byte
	err     error
	release func()
}

// readAhead reads r in a goroutine of its own, a few buffers ahead of whoever takes the
// chunks, so that decompressing (and decrypting) runs beside scanning on another CPU rather
// than in turn with it. The channel closes after the last chunk; done (called once) stops the
// reading and waits for it, so that r may be closed after.
func readAhead(r io.Reader) (<-chan chunk, func()) {
	const buffers, size = 4, 256 << 10
	free := make(chan []byte, buffers)
	for range buffers {
		free <- make([]byte, size)
	}
	out := make(chan chunk, buffers)
	stop := make(chan struct{})
	var reading sync.WaitGroup
	reading.Go(func() {
		defer close(out)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := fill(r, buf)
			c := chunk{data: buf[:n], release: func() { free <- buf }}
			if !errors.Is(err, io.EOF) {
				c.err = err
			}
			select {
			case out <- c:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	})
	return out, func() {
		close(stop)
		reading.Wait()
	}
}

// fill reads r into buf until buf is full or r fails (io.EOF at its end), returning the
// error as r gave it: unlike io.ReadFull it keeps a cut gzip stream's io.ErrUnexpectedEOF.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readProblem says why reading a backup failed, in the words an admin needs.
func readProblem(err error) string {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the file ends early: it is cut"
	case errors.Is(err, gzip.ErrChecksum):
		return "its gzip checksum does not match: the data changed after it was written"
	case strings.HasPrefix(err.Error(), "openpgp: "):
		return "its OpenPGP message is cut or was altered (" + err.Error() + ")"
	}
	return "reading stopped: " + err.Error()
}

// LoadError is a statement of the backup the server refused: which line and table, the
// server's error with its values withheld.
type LoadError struct {
	// Line is where the statement starts; At, when known, the line of the dump it failed at.
	Line, At int64
	Table    string
	Message  string
}

func (e *LoadError) Error() string {
	msg := fmt.Sprintf("the statement at line %d", e.Line)
	if e.Table != "" {
		msg += " (table " + e.Table + ")"
	}
	msg += " failed"
	if e.At > 0 {
		msg += fmt.Sprintf(" at line %d", e.At)
	}
	return redact.Line(msg + ": " + e.Message)
}

// limitedBuffer keeps the first 8 KiB written to it: a client's error output, bounded.
type limitedBuffer struct{ bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 8<<10 - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
