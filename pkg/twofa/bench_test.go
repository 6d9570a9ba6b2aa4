package twofa

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/oscarfixture"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/step"
	"github.com/emrkit/emrkit/pkg/totp"
)

// BenchmarkSyncPins measures one PIN cycle (read enrolled users, compute codes, write PINs)
// for clinics of 10, 1,000 and 10,000 enrolled users. It runs every minute: it must stay far
// below a second.
func BenchmarkSyncPins(b *testing.B) {
	srv := mariadbtest.Start(b)
	ctx := context.Background()
	props := filepath.Join(b.TempDir(), "oscar.properties")
	os.WriteFile(props, []byte("TOTP=1\n"), 0o644)
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			name := fmt.Sprintf("bench_sync_%d", n)
			srv.CreateDatabase(b, name)
			db := srv.DB(b, name)
			if _, err := db.Exec(oscarfixture.With2FA(oscarfixture.Statements(false)[0])); err != nil {
				b.Fatal(err)
			}
			enrolled := map[string]string{}
			for start := 0; start < n; start += 1000 {
				var rows []string
				var args []any
				for i := start; i < min(start+1000, n); i++ {
					secret, _ := totp.NewSecret(rand.Reader)
					user := fmt.Sprintf("user%05d", i)
					enrolled[user] = secret
					rows = append(rows, "(?, 'x', '1', 1, ?)")
					args = append(args, user, secret)
				}
				q := "INSERT INTO security (user_name, password, pin, totp_enabled, totp_secret) VALUES " + strings.Join(rows, ",")
				if _, err := db.Exec(q, args...); err != nil {
					b.Fatal(err)
				}
			}
			s := &Syncer{DB: db, Enrolled: enrolled, Properties: props, Now: time.Now}
			for b.Loop() {
				if got, err := s.Once(ctx); err != nil || got != n {
					b.Fatalf("%d %v", got, err)
				}
			}
		})
	}
}

// BenchmarkEnrolVerify measures an admin's round trip: enrol a user (journaled), then verify
// a code for the new secret.
func BenchmarkEnrolVerify(b *testing.B) {
	srv := mariadbtest.Start(b)
	ctx := context.Background()
	cfg := srv.CreateDatabase(b, "bench_enrol")
	oscarfixture.Create(b, srv.DB(b, "bench_enrol"), true)
	state := b.TempDir()
	j, err := journal.Open(state)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	d := NewDB(cfg)
	defer d.Close()
	uris := &URIFile{Path: filepath.Join(state, URIFileName)}
	r := &step.Runner{Journal: j, Out: io.Discard, Origin: journal.OriginCommand,
		Undoers: step.Registry{UserKind: UserUndoer{DB: d, URIs: uris}}}
	v := &Verifier{DB: d, StateDir: state}
	s := UserStep{DB: d, User: "oscardoc", URIs: uris, Issuer: "OSCAR", Force: true}
	at := time.Now()
	for b.Loop() {
		if _, err := r.Run(ctx, []step.Step{s}); err != nil {
			b.Fatal(err)
		}
		db, _ := d.Get(ctx)
		st, _ := readUser(ctx, db, "oscardoc")
		at = at.Add(totp.Period) // a fresh time step each round: codes are single-use
		v.Now = func() time.Time { return at }
		code, _ := totp.Code(st.Secret.String, at)
		if ok, err := v.Verify(ctx, "oscardoc", code); err != nil || !ok {
			b.Fatalf("verify: %v %v", ok, err)
		}
	}
}
