package tunnel

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/pkg/config"
)

// FuzzParseHostKey: whatever portal.tunnel.host_key holds, ParseHostKey never panics and
// errs in one line naming the key; a key it accepts is written into known_hosts exactly as
// given, in the one base64 spelling ssh decodes to the same key (ssh refuses the others), and
// the configuration accepts it too.
func FuzzParseHostKey(f *testing.F) {
	f.Add(edKey)
	f.Add(ecKey)
	f.Add("  ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIElbX8ELoTGLfJaaYv4z+UOe/euvY/34buvav65oEtc5 \n")
	f.Add(strings.TrimSuffix(ecKey, "E=") + "F=")
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDL")
	f.Add("ssh-dss AAAAB3NzaC1kc3MAAACBA")
	f.Add("portal.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIElbX8ELoTGLfJaaYv4z+UOe/euvY/34buvav65oEtc5")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHostKey(s)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "portal.tunnel.host_key: ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("%q: %q", s, msg)
			}
			return
		}
		if _, known := hostKeyCurves[k.Type]; !known || base64.StdEncoding.EncodeToString(k.Blob) != k.Base64 {
			t.Fatalf("%q accepted as %s %s, which decodes to another spelling", s, k.Type, k.Base64)
		}
		kh, err := KnownHosts(Tunnel{Host: "portal.example", Port: 2222, HostKey: s})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(kh), "\n"), "\n")
		if len(lines) != 2 || lines[1] != "[portal.example]:2222 "+k.Type+" "+k.Base64 {
			t.Fatalf("%q: known_hosts %q", s, kh)
		}
		c := config.Default()
		c.Portal.Tunnel = config.PortalTunnel{Host: "portal.example", User: "tunnel-clinic1", HostKey: k.Type + " " + k.Base64}
		if err := c.Validate(); err != nil {
			t.Fatalf("%q: the tunnel accepts it, the configuration does not: %v", s, err)
		}
	})
}

// FuzzAuthorizedKeyLine: whatever the tunnel's id_ed25519.pub holds (the tunnel's system
// account owns it), the line for the portal host's authorized_keys is one line: the options
// that restrict the key, then one public key of a type ssh knows, as it was read.
func FuzzAuthorizedKeyLine(f *testing.F) {
	f.Add([]byte(edKey + " emrkit-tunnel@clinic 0123456789abcdef\n"))
	f.Add([]byte(edKey + "\n" + ecKey + "\n"))
	f.Add([]byte(edKey + " c\r\nssh-ed25519 AAAA\n"))
	f.Add([]byte("ssh-dss AAAAB3NzaC1kc3MAAACBA\n"))
	f.Add(generated(f, ".pub"))
	env := testEnv(f.TempDir(), "emrkit-tunnel")
	if err := os.MkdirAll(env.Home, 0o700); err != nil {
		f.Fatal(err)
	}
	tun := testTunnel()
	prefix := `restrict,port-forwarding,` + permitListen(tun) + `,command="/bin/false" `
	f.Fuzz(func(t *testing.T, pub []byte) {
		if err := os.WriteFile(env.KeyPath()+".pub", pub, 0o600); err != nil {
			t.Fatal(err)
		}
		line, err := AuthorizedKeyLine(env, tun)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		key, ok := strings.CutPrefix(line, prefix)
		if !ok || strings.ContainsAny(line, "\r\n") {
			t.Fatalf("%q gave the line %q", pub, line)
		}
		fields := strings.Fields(key)
		if _, err := ParseHostKey(strings.Join(fields[:min(2, len(fields))], " ")); err != nil || key != strings.TrimSpace(string(pub)) {
			t.Fatalf("%q gave the key %q: %v", pub, key, err)
		}
	})
}

// FuzzReadPrivateKey: whatever sits at the tunnel's key path, readPrivateKey never panics.
func FuzzReadPrivateKey(f *testing.F) {
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA=\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA/////w==\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add(generated(f, ""))
	path := filepath.Join(f.TempDir(), "id_ed25519")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pub, comment, err := readPrivateKey(path)
		if err != nil && (pub != nil || comment != "") {
			t.Fatalf("an error with a key: %v", err)
		}
	})
}

// generated is a key file ssh-keygen writes: the private key (suffix "") or the public one.
func generated(f *testing.F, suffix string) []byte {
	p := filepath.Join(f.TempDir(), "k")
	if out, err := exec.Command(sshKeygenPath, "-q", "-t", "ed25519", "-N", "", "-C", "emrkit-tunnel@clinic 0123456789abcdef", "-f", p).CombinedOutput(); err != nil {
		f.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	data, err := os.ReadFile(p + suffix)
	if err != nil {
		f.Fatal(err)
	}
	return data
}
