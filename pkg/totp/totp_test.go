package totp

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// rfcSecret is RFC 6238's SHA1 key, ASCII "12345678901234567890".
var rfcSecret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

// RFC 6238 appendix B, SHA1 column.
var rfcVectors = []struct {
	unix int64
	code string
}{
	{59, "94287082"},
	{1111111109, "07081804"},
	{1111111111, "14050471"},
	{1234567890, "89005924"},
	{2000000000, "69279037"},
	{20000000000, "65353130"},
}

func TestRFC6238Vectors(t *testing.T) {
	for _, v := range rfcVectors {
		at := time.Unix(v.unix, 0)
		got, err := code(rfcSecret, at, 8)
		if err != nil {
			t.Fatalf("code(%d): %v", v.unix, err)
		}
		if got != v.code {
			t.Errorf("code(rfc secret, %d, 8) = %s, want %s", v.unix, got, v.code)
		}
		// A 6-digit code is the same value mod 10^6: the last six digits.
		got6, err := Code(rfcSecret, at)
		if err != nil {
			t.Fatalf("Code(%d): %v", v.unix, err)
		}
		if want := v.code[2:]; got6 != want {
			t.Errorf("Code(rfc secret, %d) = %s, want %s", v.unix, got6, want)
		}
	}
}

func TestCodeMatchesOathtool(t *testing.T) {
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatal("oathtool not found; run scripts/deps.sh")
	}
	rng := mrand.New(mrand.NewPCG(6238, 4226))
	for i := 0; i < 300; i++ {
		key := make([]byte, 16+rng.IntN(25)) // 16..40 bytes
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		secret := b32.EncodeToString(key)
		unix := rng.Int64N(4102444800) // 1970 .. 2100
		if i == 0 {
			unix = 0
		}
		out, err := exec.Command(oathtool, "--totp", "-b", "-N", fmt.Sprintf("@%d", unix), secret).CombinedOutput()
		if err != nil {
			t.Fatalf("oathtool --totp -b -N @%d %s: %v: %s", unix, secret, err, out)
		}
		want := strings.TrimSpace(string(out))
		got, err := Code(secret, time.Unix(unix, 0))
		if err != nil {
			t.Fatalf("Code(%s, %d): %v", secret, unix, err)
		}
		if got != want {
			t.Fatalf("Code(%s, @%d) = %s, oathtool says %s", secret, unix, got, want)
		}
		// Lower case and '=' padding are the same secret.
		lower, err := Code(strings.ToLower(base32.StdEncoding.EncodeToString(key)), time.Unix(unix, 0))
		if err != nil || lower != want {
			t.Fatalf("Code(lower-case padded %s, @%d) = %q, %v; want %s", secret, unix, lower, err, want)
		}
	}
}

func TestCodeErrors(t *testing.T) {
	if _, err := Code("not base32!", time.Unix(59, 0)); err == nil {
		t.Error("Code accepted a garbage secret")
	}
	if _, err := Code(rfcSecret, time.Unix(-1, 0)); err == nil {
		t.Error("Code accepted a time before 1970")
	}
}

func TestStep(t *testing.T) {
	for _, c := range []struct{ unix, step int64 }{
		{0, 0}, {29, 0}, {30, 1}, {59, 1}, {60, 2},
		{1111111111, 37037037}, {-1, -1}, {-30, -1}, {-31, -2},
	} {
		if got := Step(time.Unix(c.unix, 0)); got != c.step {
			t.Errorf("Step(@%d) = %d, want %d", c.unix, got, c.step)
		}
	}
	// Sub-second part is ignored; time zone is irrelevant.
	at := time.Unix(89, 999999999).In(time.FixedZone("X", -5*3600))
	if got := Step(at); got != 2 {
		t.Errorf("Step(@89.999) = %d, want 2", got)
	}
}

func TestVerify(t *testing.T) {
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	now := time.Unix(1111111111, 0) // 1 s into step 37037037
	step := Step(now)
	codeAt := func(off int64) string {
		c, err := Code(secret, now.Add(time.Duration(off)*Period))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for off := int64(-2); off <= 2; off++ {
		c := codeAt(off)
		m, ok, err := Verify(secret, c, now, 0)
		if err != nil {
			t.Fatalf("Verify(step %+d): %v", off, err)
		}
		wantOK := off >= -1 && off <= 1
		if ok != wantOK {
			t.Errorf("Verify(code of step %+d) ok = %v, want %v", off, ok, wantOK)
		}
		if ok && m != step+off {
			t.Errorf("Verify(code of step %+d) matched step %d, want %d", off, m, step+off)
		}
		if !ok && m != 0 {
			t.Errorf("Verify(code of step %+d) failed but returned step %d", off, m)
		}
	}

	// Replay protection.
	c := codeAt(0)
	m, ok, err := Verify(secret, c, now, 0)
	if err != nil || !ok || m != step {
		t.Fatalf("first use: step %d ok %v err %v", m, ok, err)
	}
	if _, ok, _ := Verify(secret, c, now, m); ok {
		t.Error("same code accepted again with lastUsedStep = matched step")
	}
	if _, ok, _ := Verify(secret, c, now.Add(10*time.Second), m); ok {
		t.Error("same code accepted again 10 s later")
	}
	if _, ok, _ := Verify(secret, c, now, m+1); ok {
		t.Error("code accepted with lastUsedStep after its step")
	}
	if _, ok, _ := Verify(secret, codeAt(-1), now, m); ok {
		t.Error("older code accepted after a newer one was used")
	}
	if m2, ok, _ := Verify(secret, codeAt(1), now, m); !ok || m2 != step+1 {
		t.Errorf("next step's code after use: step %d ok %v", m2, ok)
	}
	if m2, ok, _ := Verify(secret, c, now, m-1); !ok || m2 != step {
		t.Errorf("code with lastUsedStep one before: step %d ok %v", m2, ok)
	}

	// Secret spelling does not matter.
	if _, ok, err := Verify(strings.ToLower(secret)+"\n", c, now, 0); err != nil || !ok {
		t.Errorf("lower-case secret: ok %v err %v", ok, err)
	}

	// Malformed codes: ok=false, no error.
	for _, bad := range []string{
		"", c[:5], c + "0", "12a456", " " + c[1:], c[:5] + " ", "-12345", "+12345",
		"１２３４５６", "12345\n",
	} {
		m, ok, err := Verify(secret, bad, now, 0)
		if ok || err != nil || m != 0 {
			t.Errorf("Verify(%q) = %d, %v, %v; want 0, false, nil", bad, m, ok, err)
		}
	}
	// A wrong 6-digit code.
	wrong := fmt.Sprintf("%06d", (mustAtoi(t, c)+1)%1000000)
	if _, ok, err := Verify(secret, wrong, now, 0); ok || err != nil {
		t.Errorf("wrong code %s: ok %v err %v", wrong, ok, err)
	}
	// Invalid secret: error.
	if _, ok, err := Verify("short", c, now, 0); err == nil || ok {
		t.Errorf("invalid secret: ok %v err %v", ok, err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{a, b} {
		if len(s) != 32 {
			t.Errorf("secret %q has %d characters, want 32", s, len(s))
		}
		if strings.Contains(s, "=") {
			t.Errorf("secret %q is padded", s)
		}
		if strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
			t.Errorf("secret %q has characters outside the base32 alphabet", s)
		}
		key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
		if err != nil || len(key) != 20 {
			t.Errorf("secret %q decodes to %d bytes, %v; want 20", s, len(key), err)
		}
		if err := ValidSecret(s); err != nil {
			t.Errorf("ValidSecret(NewSecret()) = %v", err)
		}
	}
	if a == b {
		t.Errorf("two NewSecret calls gave %s", a)
	}
	// Deterministic input, exact encoding.
	s, err := NewSecret(bytes.NewReader([]byte("12345678901234567890")))
	if err != nil || s != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" {
		t.Errorf("NewSecret(rfc key) = %q, %v", s, err)
	}
	// A short read is an error, not a weak secret.
	if s, err := NewSecret(bytes.NewReader(make([]byte, 19))); err == nil {
		t.Errorf("NewSecret(19-byte reader) = %q, nil error", s)
	}
	if _, err := NewSecret(errReader{}); err == nil {
		t.Error("NewSecret(failing reader) gave no error")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestValidSecret(t *testing.T) {
	key16 := b32.EncodeToString(make([]byte, 16)) // 26 characters, no padding
	for _, s := range []string{
		rfcSecret,
		strings.ToLower(rfcSecret),
		"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
		key16,
		base32.StdEncoding.EncodeToString(make([]byte, 16)), // padded
		strings.ToLower(key16),
		" " + rfcSecret + "\n",
		rfcSecret + "=", // trailing '=' is ignored, however many
	} {
		if err := ValidSecret(s); err != nil {
			t.Errorf("ValidSecret(%q) = %v", s, err)
		}
	}
	for _, s := range []string{
		"",
		"   ",
		"not base32!",
		"GEZDGNBVGY3TQOJ1GEZDGNBVGY3TQOJQ",       // '1' is not base32
		"GEZDGNBV GY3TQOJQGEZDGNBVGY3TQOJQ",      // inner space
		"GEZDGNBVGY3TQOJQ\nGEZDGNBVGY3TQOJQ",     // inner newline
		"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQO",         // 30 chars: impossible length
		"JBSWY3DPEHPK3PXP",                       // 10 bytes: too short
		b32.EncodeToString(make([]byte, 15)),     // 15 bytes: too short
		"GEZDGNBVGY3TQOJQGEZD=GNBVGY3TQOJQGEZDG", // '=' inside
	} {
		if err := ValidSecret(s); err == nil {
			t.Errorf("ValidSecret(%q) = nil, want an error", s)
		}
	}
	err := ValidSecret("JBSWY3DPEHPK3PXP")
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short secret error %v does not say what is needed", err)
	}
}

func TestURI(t *testing.T) {
	got := URI("OSCAR", "alice", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq")
	want := "otpauth://totp/OSCAR:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=OSCAR&algorithm=SHA1&digits=6&period=30"
	if got != want {
		t.Errorf("URI =\n %s\nwant\n %s", got, want)
	}

	for _, c := range []struct{ issuer, account string }{
		{"OSCAR", "alice"},
		{"Main St Clinic", "dr smith"},
		{"OSCAR", "dr:smith"},
		{"A:B & C+D", "x/y?z#w%&=é"},
	} {
		raw := URI(c.issuer, c.account, rfcSecret)
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%s): %v", raw, err)
		}
		if u.Scheme != "otpauth" || u.Host != "totp" {
			t.Errorf("%s: scheme %q host %q", raw, u.Scheme, u.Host)
		}
		if strings.ContainsAny(raw, " +#") {
			t.Errorf("%s: has a space, '+' or '#'", raw)
		}
		// Exactly one ':' in the label, separating issuer from account.
		label := strings.TrimPrefix(u.EscapedPath(), "/")
		if strings.Count(label, ":") != 1 {
			t.Fatalf("%s: label %q has %d colons, want 1", raw, label, strings.Count(label, ":"))
		}
		iss, acc, _ := strings.Cut(label, ":")
		if s, _ := url.PathUnescape(iss); s != c.issuer {
			t.Errorf("%s: label issuer %q, want %q", raw, s, c.issuer)
		}
		if s, _ := url.PathUnescape(acc); s != c.account {
			t.Errorf("%s: label account %q, want %q", raw, s, c.account)
		}
		q := u.Query()
		for k, v := range map[string]string{
			"secret": rfcSecret, "issuer": c.issuer, "algorithm": "SHA1", "digits": "6", "period": "30",
		} {
			if got := q.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", raw, k, got, v)
			}
		}
		if len(q) != 5 {
			t.Errorf("%s: %d query parameters, want 5", raw, len(q))
		}
	}
	if got := URI("OSCAR", "dr smith", rfcSecret); !strings.Contains(got, "/OSCAR:dr%20smith?") {
		t.Errorf("space in account not escaped as %%20: %s", got)
	}
	if got := URI("OSCAR", "dr:smith", rfcSecret); !strings.Contains(got, "/OSCAR:dr%3Asmith?") {
		t.Errorf("colon in account not escaped as %%3A: %s", got)
	}
	if got := URI("Main St", "a", rfcSecret); !strings.Contains(got, "&issuer=Main%20St&") {
		t.Errorf("space in issuer parameter not %%20: %s", got)
	}
	// No issuer: bare account label, no issuer parameter.
	if got, want := URI("", "alice", rfcSecret), "otpauth://totp/alice?secret="+rfcSecret+"&algorithm=SHA1&digits=6&period=30"; got != want {
		t.Errorf("URI without issuer = %s, want %s", got, want)
	}
}

// writeQR runs WriteQR with a 2 s deadline.
func writeQR(t *testing.T, w *bytes.Buffer, uri string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- WriteQR(w, uri) }()
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		t.Fatal("WriteQR did not finish within 2 s (is it probing the terminal?)")
		return nil
	}
}

func TestWriteQR(t *testing.T) {
	var buf bytes.Buffer
	uri := URI("OSCAR", "dr smith", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	if err := writeQR(t, &buf, uri); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if out == "" {
		t.Fatal("WriteQR wrote nothing")
	}
	if !strings.HasSuffix(out, "\n") {
		t.Error("output does not end in a newline")
	}
	blocks, halves := 0, 0
	for i, r := range out {
		switch r {
		case '▀', '▄':
			halves++
			blocks++
		case '█':
			blocks++
		case ' ', '\n':
		default:
			t.Fatalf("unexpected rune %q (%U) at byte %d", r, r, i)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	width := len([]rune(lines[0]))
	for i, l := range lines {
		if n := len([]rune(l)); n != width {
			t.Errorf("line %d is %d runes wide, line 0 is %d", i, n, width)
		}
	}
	// A QR code is at least 21 modules; half blocks draw two rows per line.
	if width < 21 || len(lines) < 11 || blocks < width*len(lines)/4 {
		t.Errorf("implausible QR: %d lines of %d runes, %d blocks", len(lines), width, blocks)
	}
	// Half blocks: two module rows per line, so about half as many lines
	// as columns, and some lines mix a black and a white row.
	if halves == 0 || len(lines) > width/2+2 {
		t.Errorf("not drawn with half blocks: %d lines of %d runes, %d half blocks", len(lines), width, halves)
	}
	t.Logf("QR: %d lines x %d columns for a %d-byte URI", len(lines), width, len(uri))
}

func TestWriteQRErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := writeQR(t, &buf, strings.Repeat("x", 5000)); err == nil {
		t.Error("WriteQR of 5000 bytes gave no error")
	}
	if err := WriteQR(failWriter{}, "otpauth://totp/x"); err == nil {
		t.Error("WriteQR to a failing writer gave no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func BenchmarkCode(b *testing.B) {
	at := time.Unix(1111111111, 0)
	for b.Loop() {
		if _, err := Code(rfcSecret, at); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	at := time.Unix(1111111111, 0)
	c, err := Code(rfcSecret, at)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, ok, err := Verify(rfcSecret, c, at, 0); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
