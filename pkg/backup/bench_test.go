package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/pgp"
)

// benchRowsEnv sets the fixture size; `make bench` sets 1000000 (the same variable as
// pkg/migrate's benchmarks). Unset, a small table keeps `go test -bench .` quick.
const benchRowsEnv = "EMRKIT_BENCH_ROWS"

// benchServer is a private MariaDB with a clinic server's buffer pool and an oscar_15 of rows
// fixture patients.
func benchServer(b *testing.B, rows int) (*mariadbtest.Server, config.Database) {
	srv := mariadbtest.Start(b)
	srv.DB(b, "").Exec("SET GLOBAL innodb_buffer_pool_size = 512 * 1024 * 1024") // a clinic server's, not a test's
	cfg := srv.CreateDatabase(b, "oscar_15")
	if err := demofixture.Fill(context.Background(), srv.DB(b, "oscar_15"), rows, 1); err != nil {
		b.Fatal(err)
	}
	return srv, cfg
}

// benchRows is the fixture size benchRowsEnv asks for, else def.
func benchRows(b *testing.B, def int) int {
	s := os.Getenv(benchRowsEnv)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a number of rows", benchRowsEnv, s)
	}
	return n
}

// BenchmarkVersusGzip compares `emrkit backup --encrypt` (mariadb-dump, gzip and OpenPGP
// in one stream) with `mariadb-dump | gzip > file` on the same database, interleaved in one
// run. Metrics: seconds of each, MB of SQL per second, and emrkit's throughput as a fraction
// of the pipeline's (the target: at least 0.8). The unencrypted backup is timed too.
func BenchmarkVersusGzip(b *testing.B) {
	rows := benchRows(b, 20_000)
	_, cfg := benchServer(b, rows)
	ctx := context.Background()
	ks, err := pgp.GenerateKey("Bench <bench@example.org>", pgp.RSA3072)
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "export.pub.asc")
	os.WriteFile(keyFile, ks.Public, 0o600)
	recipients, err := ReadPublicKey(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	defaults := mariadbtest.OptionFile(b, cfg)
	pipeline := "mariadb-dump --defaults-extra-file=" + defaults + " --single-transaction --routines --triggers --events --hex-blob oscar_15 | gzip > " + filepath.Join(dir, "pipeline.sql.gz")

	var pipeT, encT, plainT time.Duration
	var sqlBytes int64
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		if out, err := exec.Command("sh", "-c", "set -e; "+pipeline).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", pipeline, err, out)
		}
		pipeT += time.Since(start)

		start = time.Now()
		sealed, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "bench", Recipients: recipients})
		if err != nil {
			b.Fatal(err)
		}
		encT += time.Since(start)
		os.Remove(sealed)

		start = time.Now()
		plain, err := Write(ctx, Options{Database: cfg, Dir: dir, Label: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		plainT += time.Since(start)
		if sqlBytes == 0 {
			sum, err := Verify(ctx, plain, nil, 0)
			if err != nil {
				b.Fatal(err)
			}
			sqlBytes = sum.Size
		}
		os.Remove(plain)
	}
	mb := float64(sqlBytes) / 1e6
	per := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	b.ReportMetric(per(pipeT), "gzip-pipeline-s")
	b.ReportMetric(per(encT), "encrypted-s")
	b.ReportMetric(per(plainT), "plain-s")
	b.ReportMetric(mb/per(encT), "encrypted-MB/s")
	b.ReportMetric(pipeT.Seconds()/encT.Seconds(), "throughput-vs-gzip")
	b.Logf("%d rows, %.0f MB of SQL: mariadb-dump | gzip %.2fs (%.0f MB/s), backup --encrypt %.2fs (%.0f MB/s, %.2fx the pipeline's throughput), plain backup %.2fs",
		rows, mb, per(pipeT), mb/per(pipeT), per(encT), mb/per(encT), pipeT.Seconds()/encT.Seconds(), per(plainT))
}

// BenchmarkVerifyVersusDumpRestore compares `emrkit backup verify` (restore the backup into a
// scratch database, dump it again, compare every table, drop it) with what an admin would do
// by hand, `mariadb-dump db | mariadb scratch`, on the same data, in one run. Metrics: the
// seconds of each and verify's time as a multiple of the plain pipeline's.
func BenchmarkVerifyVersusDumpRestore(b *testing.B) {
	rows := min(benchRows(b, 100_000), 100_000) // the size: a clinic's 100,000 patients
	srv := mariadbtest.Start(b)
	ctx := context.Background()
	cfg := srv.CreateDatabase(b, "oscar_15")
	if err := demofixture.Fill(ctx, srv.DB(b, "oscar_15"), rows, 1); err != nil {
		b.Fatal(err)
	}
	file, err := Write(ctx, Options{Database: cfg, Dir: b.TempDir(), Label: ManualLabel})
	if err != nil {
		b.Fatal(err)
	}
	server := cfg
	server.Name = ""
	defaults := mariadbtest.OptionFile(b, server)
	var verify, plain time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := VerifyRestore(ctx, cfg, file, nil)
		if err != nil || !res.OK {
			b.Fatalf("%+v %v", res, err)
		}
		verify += time.Since(start)
		srv.DB(b, "").Exec("DROP DATABASE IF EXISTS plain_restore")
		srv.DB(b, "").Exec("CREATE DATABASE plain_restore")
		start = time.Now()
		sh := `mariadb-dump --defaults-extra-file="$1" --single-transaction oscar_15 | mariadb --defaults-extra-file="$1" plain_restore`
		if out, err := exec.Command("sh", "-c", sh, "sh", defaults).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		plain += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(verify.Seconds()/n, "verify-s")
	b.ReportMetric(plain.Seconds()/n, "dump|restore-s")
	b.ReportMetric(verify.Seconds()/plain.Seconds(), "verify/plain")
}

// BenchmarkRestoreVersusPlainClient compares `emrkit restore` with a plain
// `mariadb DB < dump.sql` of the same backup's SQL, on the same server in one run: into a new
// database (a new server's, after a disaster: one pass that checks as it loads) and over the
// database it replaces (verify first, then load). Each copy must hold what the plain one
// holds: CHECKSUM TABLE of every table and SHOW CREATE TABLE agree. Metrics: the seconds of
// each and the speed-ups (the goal: at least 2 on 1,000,000 patients).
func BenchmarkRestoreVersusPlainClient(b *testing.B) {
	rows := benchRows(b, 100_000)
	srv, cfg := benchServer(b, rows)
	ctx := context.Background()
	file, err := Write(ctx, Options{Database: cfg, Dir: b.TempDir(), Label: ManualLabel})
	if err != nil {
		b.Fatal(err)
	}
	plainSQL := filepath.Join(b.TempDir(), "dump.sql")
	if out, err := exec.Command("sh", "-c", `gzip -dc "$1" > "$2"`, "sh", file, plainSQL).CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	server := cfg
	server.Name = ""
	defaults := mariadbtest.OptionFile(b, server)
	root := srv.DB(b, "")
	sql := func(qs ...string) {
		for _, q := range qs {
			if _, err := root.Exec(q); err != nil {
				b.Fatal(err)
			}
		}
	}
	restore := func(target string) time.Duration {
		start := time.Now()
		if _, err := Restore(ctx, RestoreOptions{Database: cfg, File: file, Target: target}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var fresh, over, plain time.Duration
	for b.Loop() {
		sql("DROP DATABASE IF EXISTS plain_restore", "CREATE DATABASE plain_restore")
		start := time.Now()
		if out, err := exec.Command("sh", "-c", `mariadb --defaults-extra-file="$1" plain_restore < "$2"`, "sh", defaults, plainSQL).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		plain += time.Since(start)
		sql("DROP DATABASE IF EXISTS new_restore")
		fresh += restore("new_restore")
		over += restore("new_restore") // there now, with every table
	}
	tables := sameTables(b, srv, "plain_restore", "new_restore")
	n := float64(b.N)
	b.ReportMetric(fresh.Seconds()/n, "restore-new-s")
	b.ReportMetric(over.Seconds()/n, "restore-over-s")
	b.ReportMetric(plain.Seconds()/n, "mariadb<dump-s")
	b.ReportMetric(plain.Seconds()/fresh.Seconds(), "speed-up-new")
	b.ReportMetric(plain.Seconds()/over.Seconds(), "speed-up-over")
	b.Logf("%d rows, %d tables identical: mariadb < dump %.2fs; emrkit restore (load on %d connections) into a new database %.2fs (%.2fx), over the database %.2fs (%.2fx, verified first)",
		rows, tables, plain.Seconds()/n, loadWorkers(), fresh.Seconds()/n, plain.Seconds()/fresh.Seconds(), over.Seconds()/n, plain.Seconds()/over.Seconds())
}
