// Package totp owns TOTP secrets and codes for OSCAR's two-factor login:
// generating and checking the per-user base32 secret that OSCAR keeps in
// security.totp_secret, computing the RFC 6238 code for an instant (the value
// OSCAR's cron job writes into security.pin every 30 s), verifying a code typed
// by a user with replay protection, and producing the otpauth:// enrolment URI
// and its terminal QR code for FreeOTP and Google Authenticator.
//
// Codes are always HMAC-SHA1, 6 digits, 30 second period. The package is pure
// logic: it keeps no state, reads no clock (callers pass the time) and never
// probes the terminal.
package totp

import (
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

const (
	// Digits is the number of digits in a code.
	Digits = 6
	// Period is the lifetime of one code (one time step).
	Period = 30 * time.Second
	// Algorithm is the HMAC hash, as named in otpauth URIs.
	Algorithm = "SHA1"
	// SecretBytes is the size of secrets made by NewSecret (160 bits,
	// the HMAC-SHA1 output size recommended by RFC 4226).
	SecretBytes = 20
	// MinSecretBytes is the smallest secret ValidSecret accepts (128 bits,
	// the RFC 4226 minimum).
	MinSecretBytes = 16
	// Skew is how many steps either side of the current one Verify accepts.
	Skew = 1
)

// periodSeconds is Period in whole seconds.
const periodSeconds = int64(Period / time.Second)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret reads SecretBytes bytes from r (pass crypto/rand.Reader) and
// returns them base32-encoded with the standard alphabet and no padding:
// 32 upper-case characters.
func NewSecret(r io.Reader) (string, error) {
	buf := make([]byte, SecretBytes)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", fmt.Errorf("totp: reading random secret: %w", err)
	}
	return b32.EncodeToString(buf), nil
}

// normalize puts a secret in the canonical form: trimmed, upper case,
// without '=' padding.
func normalize(s string) string {
	return strings.TrimRight(strings.ToUpper(strings.TrimSpace(s)), "=")
}

// ValidSecret reports whether s is a usable secret: base32 (standard
// alphabet) decoding to at least MinSecretBytes bytes. Surrounding white
// space, lower case and trailing '=' padding (present, missing or miscounted)
// are accepted and ignored, here and wherever a secret is taken.
func ValidSecret(s string) error {
	n := normalize(s)
	if n == "" {
		return errors.New("totp: secret is empty")
	}
	// The decoder silently skips '\r' and '\n'; a secret must not contain them.
	if strings.ContainsAny(n, "\r\n") {
		return errors.New("totp: secret contains a line break")
	}
	key, err := b32.DecodeString(n)
	if err != nil {
		return fmt.Errorf("totp: secret is not valid base32 (A-Z, 2-7): %w", err)
	}
	if len(key) < MinSecretBytes {
		return fmt.Errorf("totp: secret is %d bytes, need at least %d (%d base32 characters)",
			len(key), MinSecretBytes, b32.EncodedLen(MinSecretBytes))
	}
	return nil
}

// Step returns the RFC 6238 time step containing t: floor(unix seconds / 30).
func Step(t time.Time) int64 {
	u := t.Unix()
	s := u / periodSeconds
	if u%periodSeconds < 0 {
		s--
	}
	return s
}

// Code returns the 6-digit code of secret at instant t.
func Code(secret string, t time.Time) (string, error) {
	return code(secret, t, Digits)
}

// code computes the code with a given number of digits through pquerna/otp;
// Code wraps it, and the RFC 6238 test vectors (8 digits) exercise it.
func code(secret string, t time.Time, digits int) (string, error) {
	if err := ValidSecret(secret); err != nil {
		return "", err
	}
	return generate(normalize(secret), t, digits)
}

// generate computes the code of an already validated, normalized secret.
func generate(secret string, t time.Time, digits int) (string, error) {
	if t.Unix() < 0 {
		return "", fmt.Errorf("totp: time %s is before 1970", t.UTC().Format(time.RFC3339))
	}
	c, err := totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{
		Period:    uint(periodSeconds),
		Digits:    otp.Digits(digits),
		Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", fmt.Errorf("totp: generating code: %w", err)
	}
	return c, nil
}

// Verify checks a code typed by a user against secret at instant t. It accepts
// the codes of the steps Step(t)-1, Step(t) and Step(t)+1, but only a step
// greater than lastUsedStep: the caller must store the returned matchedStep
// and pass it back as lastUsedStep next time, so a code cannot be used twice
// (pquerna/otp has no replay protection). Pass 0 when no code was used yet.
//
// A code that is not exactly 6 ASCII digits gives ok=false, not an error; err
// is set only for an invalid secret. matchedStep is 0 when ok is false.
// Comparisons are constant-time.
func Verify(secret, code string, t time.Time, lastUsedStep int64) (matchedStep int64, ok bool, err error) {
	if err := ValidSecret(secret); err != nil {
		return 0, false, err
	}
	if !IsCode(code) {
		return 0, false, nil
	}
	key := normalize(secret)
	now := Step(t)
	for s := now - Skew; s <= now+Skew; s++ {
		if s < 0 {
			continue
		}
		want, err := generate(key, time.Unix(s*periodSeconds, 0), Digits)
		if err != nil {
			return 0, false, err
		}
		// Check every step (no early exit); keep the latest usable match.
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && s > lastUsedStep {
			matchedStep, ok = s, true
		}
	}
	return matchedStep, ok, nil
}

// IsCode reports whether s has the form of a code: exactly Digits ASCII digits.
func IsCode(s string) bool {
	if len(s) != Digits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// URI returns the otpauth:// key URI that FreeOTP and Google Authenticator
// enrol from:
//
//	otpauth://totp/ISSUER:ACCOUNT?secret=S&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
//
// Issuer and account are percent-encoded in the label (a ':' inside either
// becomes %3A, so the separator stays unambiguous, and '+' becomes %2B) and
// the issuer is
// query-escaped in the parameter, with spaces as %20 rather than '+', which
// some authenticator apps show literally. The secret is upper-cased and
// stripped of padding. With an empty issuer the label is just the account and
// there is no issuer parameter.
func URI(issuer, account, secret string) string {
	label := labelEscape(account)
	if issuer != "" {
		label = labelEscape(issuer) + ":" + label
	}
	var b strings.Builder
	b.WriteString("otpauth://totp/")
	b.WriteString(label)
	b.WriteString("?secret=")
	b.WriteString(queryEscape(normalize(secret)))
	if issuer != "" {
		b.WriteString("&issuer=")
		b.WriteString(queryEscape(issuer))
	}
	b.WriteString("&algorithm=" + Algorithm)
	b.WriteString("&digits=" + strconv.Itoa(Digits))
	b.WriteString("&period=" + strconv.FormatInt(periodSeconds, 10))
	return b.String()
}

// labelEscape path-escapes one half of the label. url.PathEscape leaves ':'
// and '+' alone; ':' separates issuer from account and some apps decode '+'
// in the label as a space, so both are escaped too.
var labelEscaper = strings.NewReplacer(":", "%3A", "+", "%2B")

func labelEscape(s string) string {
	return labelEscaper.Replace(url.PathEscape(s))
}

// queryEscape is url.QueryEscape with spaces as %20. QueryEscape turns a
// literal '+' into %2B, so every '+' in its output stands for a space.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// WriteQR writes uri to w as a QR code (error correction level L) drawn with
// Unicode half blocks, for a terminal with a dark background. It only writes
// to w: it never probes or configures the terminal (it does not use
// qrterminal.Generate, whose sixel detection writes to and reads from stdout
// in raw mode and can hang when there is no one to answer, as under dpkg).
func WriteQR(w io.Writer, uri string) (err error) {
	ew := &errWriter{w: w}
	defer func() {
		// qrterminal ignores qr.Encode's error (text too long) and then
		// dereferences the nil code.
		if r := recover(); r != nil {
			err = fmt.Errorf("totp: cannot draw QR code for a %d-byte URI: %v", len(uri), r)
		}
	}()
	qrterminal.GenerateWithConfig(uri, qrterminal.Config{
		Level:          qrterminal.L,
		Writer:         ew,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		QuietZone:      1,
	})
	if ew.err != nil {
		return fmt.Errorf("totp: writing QR code: %w", ew.err)
	}
	return nil
}

// errWriter remembers the first write error, which qrterminal discards, and
// skips later writes.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	e.err = err
	return n, err
}
