package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp"
)

// TestVerifyRestore: a backup (plain and encrypted) restores into the scratch database with
// every table's data identical; the same backup with its last KB cut off fails, naming the
// table where reading stopped; the scratch database is gone afterwards either way.
func TestVerifyRestore(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_vr")
	db := srv.DB(t, "oscar_vr")
	oscarfixture.Create(t, db, false)
	for _, q := range demofixture.Statements(5000, 3) {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "backups")
	ks, err := pgp.GenerateKey("Verify Test <verify@example.org>", pgp.Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	kd := t.TempDir()
	os.WriteFile(filepath.Join(kd, "public.asc"), ks.Public, 0o600)
	os.WriteFile(filepath.Join(kd, "private.asc"), ks.Private, 0o600)
	os.WriteFile(filepath.Join(kd, "pass"), ks.Passphrase, 0o600)
	public, err := ReadPublicKey(filepath.Join(kd, "public.asc"))
	if err != nil {
		t.Fatal(err)
	}
	private, err := ReadPrivateKey(filepath.Join(kd, "private.asc"), filepath.Join(kd, "pass"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "enc", Recipients: public})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file string
		open bool
	}{{plain, false}, {encrypted, true}} {
		k := private
		if !c.open {
			k = nil
		}
		res, err := VerifyRestore(ctx, cfg, c.file, k)
		if err != nil || !res.OK || res.Tables != 3 || res.Rows != 5000+3+1 {
			t.Fatalf("%s: %+v %v", filepath.Base(c.file), res, err)
		}
		t.Logf("%s: %d tables, %d rows restored identically in %.2fs", filepath.Base(c.file), res.Tables, res.Rows, res.Seconds)
	}
	if ok, _, _ := Exists(ctx, cfg, ScratchDatabase); ok {
		t.Fatal("the scratch database was left behind")
	}

	for _, f := range []string{plain, encrypted} {
		data, _ := os.ReadFile(f)
		cut := filepath.Join(t.TempDir(), filepath.Base(f))
		os.WriteFile(cut, data[:len(data)-1024], 0o600)
		res, err := VerifyRestore(ctx, cfg, cut, private)
		if err != nil || res.OK || !strings.Contains(res.Problem, "damaged or incomplete: reading stopped in table") {
			t.Fatalf("%s with its last KB cut: %+v %v", filepath.Base(f), res, err)
		}
		t.Logf("cut %s: %s", filepath.Base(f), res.Problem)
	}
	if ok, _, _ := Exists(ctx, cfg, ScratchDatabase); ok {
		t.Fatal("the scratch database was left behind after a failed test")
	}
}

// TestVerifyHundredThousandPatients: the restore test of a clinic-sized backup (100,000
// patients) reports every table identical.
func TestVerifyHundredThousandPatients(t *testing.T) {
	ctx := context.Background()
	srv := mariadbtest.Start(t)
	cfg := srv.CreateDatabase(t, "oscar_big")
	oscarfixture.Create(t, srv.DB(t, "oscar_big"), false)
	demofixture.Create(t, srv.DB(t, "oscar_big"), 100_000, 7)
	file, err := Write(ctx, Options{Database: cfg, Dir: t.TempDir(), Label: ManualLabel})
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyRestore(ctx, cfg, file, nil)
	if err != nil || !res.OK || res.Rows != 100_000+4 {
		t.Fatalf("%+v %v", res, err)
	}
	t.Logf("100,000 patients: %d tables, %d rows identical in %.1fs", res.Tables, res.Rows, res.Seconds)
}
