package debconf

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// frontend answers the protocol from a table: a stand-in for debconf's own frontend, whose
// real counterpart the chroot lifecycle tests use.
func frontend(t *testing.T, answers map[string]string) (*Client, func() []string) {
	cmdR, cmdW := io.Pipe()
	repR, repW := io.Pipe()
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(cmdR)
		for sc.Scan() {
			seen = append(seen, sc.Text())
			if sc.Text() == "STOP" {
				continue
			}
			reply, ok := answers[sc.Text()]
			if !ok {
				reply = "20 Unsupported command"
			}
			io.WriteString(repW, reply+"\n")
		}
	}()
	return New(repR, cmdW), func() []string { cmdW.Close(); <-done; return seen }
}

func TestGetSetPurge(t *testing.T) {
	c, seen := frontend(t, map[string]string{
		"GET emrkit/https-port":        "0 8443",
		"GET emrkit/totp-users":        "0 oscardoc nurse",
		"GET emrkit/ssh-port":          "0",
		"SET emrkit/database oscar_15": "0 value set",
		"GET emrkit/nonesuch":          "10 emrkit/nonesuch doesn't exist",
		"PURGE":                        "0",
	})
	if v, err := c.Get("emrkit/https-port"); err != nil || v != "8443" {
		t.Fatalf("%q %v", v, err)
	}
	if v, _ := c.Get("emrkit/totp-users"); v != "oscardoc nurse" {
		t.Fatalf("value with spaces: %q", v)
	}
	if v, err := c.Get("emrkit/ssh-port"); err != nil || v != "" {
		t.Fatalf("empty value: %q %v", v, err)
	}
	if err := c.Set("emrkit/database", "oscar_15"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get("emrkit/nonesuch")
	var de *Error
	if !errors.As(err, &de) || de.Code != BadParams {
		t.Fatalf("want code 10 error, got %v", err)
	}
	if err := c.Purge(); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	got := strings.Join(seen(), "|")
	if got != "GET emrkit/https-port|GET emrkit/totp-users|GET emrkit/ssh-port|SET emrkit/database oscar_15|GET emrkit/nonesuch|PURGE|STOP" {
		t.Fatalf("commands sent: %s", got)
	}
}

func TestRejectsLineBreaksAndGarbage(t *testing.T) {
	c, _ := frontend(t, map[string]string{"GET x": "garbage"})
	if err := c.Set("emrkit/x", "a\nGET y"); err == nil {
		t.Fatal("a value with a line break would inject a command")
	}
	if _, err := c.Get("x"); err == nil || !strings.Contains(err.Error(), "not CODE text") {
		t.Fatalf("got %v", err)
	}
}
