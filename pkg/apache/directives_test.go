package apache

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestURLPrefixesFindEveryWayToTheTree: an Alias to the link, an Alias to its target (quoted,
// in an enabled site reached by a2ensite's link), the tree's place under a DocumentRoot; a
// commented Alias, one in a disabled site and one to another tree do not count.
func TestURLPrefixesFindEveryWayToTheTree(t *testing.T) {
	dir, www := t.TempDir(), t.TempDir()
	real := filepath.Join(www, "openemr-7.0.3")
	link := filepath.Join(www, "openemr")
	for _, d := range []string{real, filepath.Join(www, "other"), filepath.Join(dir, "conf-enabled"), filepath.Join(dir, "sites-enabled"), filepath.Join(dir, "sites-available")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("openemr-7.0.3", link); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"apache2.conf":                "ServerRoot /etc/apache2\n#Alias /old " + link + "\n",
		"conf-enabled/openemr.conf":   "Alias /openemr " + link + "\n<Directory " + link + ">\n</Directory>\n",
		"sites-available/legacy.conf": "<VirtualHost *:80>\n\tDocumentRoot " + www + "\n\talias \"/emr/\" \"" + real + "/\"\n</VirtualHost>\n",
		"sites-available/off.conf":    "Alias /disabled " + link + "\n",
		"conf-enabled/other.conf":     "Alias /other " + filepath.Join(www, "other") + "\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../sites-available/legacy.conf", filepath.Join(dir, "sites-enabled", "legacy.conf")); err != nil {
		t.Fatal(err)
	}
	got, err := Env{Dir: dir}.URLPrefixes([]string{link, real})
	want := []string{"/openemr/", "/openemr-7.0.3/", "/emr/"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("prefixes %q %v, want %q", got, err, want)
	}
}

// TestCertificatesAreApachesOwn: the certificate an SSL site names is read, through a link (as
// certbot's live/ names are); a site without one gives an error, not an empty pin.
func TestCertificatesAreApachesOwn(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sites-enabled"), 0o755)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "openemr.lab"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(dir, "sites-enabled", "ssl.conf")
	if _, err := (Env{Dir: dir}).Certificates(); err == nil {
		t.Fatal("no SSLCertificateFile: no error")
	}
	crt := filepath.Join(dir, "archive.pem")
	os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.Symlink(crt, filepath.Join(dir, "live.pem"))
	os.WriteFile(site, []byte("<VirtualHost *:443>\n\tSSLEngine on\n\tSSLCertificateFile "+filepath.Join(dir, "live.pem")+"\n</VirtualHost>\n"), 0o644)
	got, err := Env{Dir: dir}.Certificates()
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], der) {
		t.Fatalf("certificates: %d %v", len(got), err)
	}
}
