// Package debconf is a client of the debconf protocol (debconf-devel(7)) for emrkit's
// maintainer scripts. No Go library exists for it; the shell script sources confmodule, which
// starts the frontend and points fd 3 at it, then runs `emrkit maint ...`: commands go to
// fd 3, replies come on stdin as "CODE text".
package debconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Reply codes of the protocol.
const (
	Success      = 0
	Escaped      = 1
	BadParams    = 10
	SyntaxError  = 20
	InputSkipped = 30
	Internal     = 100
)

// Client talks to a debconf frontend.
type Client struct {
	w io.Writer
	r *bufio.Reader
}

// New makes a client that writes commands to w and reads replies from r.
func New(r io.Reader, w io.Writer) *Client {
	return &Client{w: w, r: bufio.NewReader(r)}
}

// ErrNoFrontend means no debconf frontend is running (not started from a maintainer script
// that sourced confmodule).
var ErrNoFrontend = errors.New("debconf: no frontend (DEBIAN_HAS_FRONTEND is unset)")

// FromEnv connects to the frontend that started this process: fd 3 once confmodule has
// redirected stdout (DEBCONF_REDIR), stdout otherwise.
func FromEnv() (*Client, error) {
	if os.Getenv("DEBIAN_HAS_FRONTEND") == "" {
		return nil, ErrNoFrontend
	}
	w := io.Writer(os.Stdout)
	if os.Getenv("DEBCONF_REDIR") != "" {
		w = os.NewFile(3, "debconf")
	}
	return New(os.Stdin, w), nil
}

// Error is a reply with a failure code.
type Error struct {
	Command string
	Code    int
	Text    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("debconf: %s: %d %s", e.Command, e.Code, e.Text)
}

// Command sends one command and returns the reply's code and text. Protocol failures
// (codes >= 10, except a skipped input) are errors.
func (c *Client) Command(args ...string) (int, string, error) {
	for _, a := range args {
		if strings.ContainsAny(a, "\n") {
			return 0, "", fmt.Errorf("debconf: %q: no line breaks in a command", a)
		}
	}
	cmd := strings.Join(args, " ")
	if _, err := fmt.Fprintln(c.w, cmd); err != nil {
		return 0, "", fmt.Errorf("debconf: send %s: %w", args[0], err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return 0, "", fmt.Errorf("debconf: reply to %s: %w", args[0], err)
	}
	line = strings.TrimRight(line, "\n")
	codeText, text, _ := strings.Cut(line, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil {
		return 0, "", fmt.Errorf("debconf: reply to %s is not CODE text: %q", args[0], line)
	}
	if code >= BadParams && code != InputSkipped {
		return code, text, &Error{Command: cmd, Code: code, Text: text}
	}
	return code, text, nil
}

// Get returns a question's value.
func (c *Client) Get(question string) (string, error) {
	_, v, err := c.Command("GET", question)
	return v, err
}

// Set sets a question's value.
func (c *Client) Set(question, value string) error {
	_, _, err := c.Command("SET", question, value)
	return err
}

// Purge removes every question of the package (postrm purge).
func (c *Client) Purge() error {
	_, _, err := c.Command("PURGE")
	return err
}

// Stop ends the conversation; the protocol sends no reply to STOP.
func (c *Client) Stop() error {
	_, err := fmt.Fprintln(c.w, "STOP")
	return err
}
