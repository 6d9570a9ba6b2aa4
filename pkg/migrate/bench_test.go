package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emrkit/emrkit/internal/demofixture"
	"github.com/emrkit/emrkit/pkg/backup"
	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/journal"
	"github.com/emrkit/emrkit/pkg/mariadb"
	"github.com/emrkit/emrkit/pkg/mariadb/mariadbtest"
	"github.com/emrkit/emrkit/pkg/progress"
	"github.com/emrkit/emrkit/pkg/step"
)

// BenchRowsEnv sets the benchmarks' fixture size; `make bench` sets 1000000. Unset, they use
// a small table so that `go test -bench .` stays quick on a shared machine.
const BenchRowsEnv = "EMRKIT_BENCH_ROWS"

func benchRows(b *testing.B) int {
	s := os.Getenv(BenchRowsEnv)
	if s == "" {
		return 20_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a number of rows", BenchRowsEnv, s)
	}
	return n
}

// ServerForBench starts a private MariaDB sized like a clinic's server rather than a test's:
// mariadbtest keeps the buffer pool (64 MB) and redo log (16 MB) small to start fast, which
// would make a million-row table spill to disk. Both sides of every comparison run on it.
func serverForBench(b *testing.B) (*mariadbtest.Server, *sql.DB) {
	srv := mariadbtest.Start(b)
	root := srv.DB(b, "")
	for _, q := range []string{
		"SET GLOBAL innodb_buffer_pool_size = 512 * 1024 * 1024",
		"SET GLOBAL innodb_log_file_size = 256 * 1024 * 1024",
	} {
		if _, err := root.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	return srv, root
}

// quiesce waits until InnoDB has written the copy's pages and purged its history, so that
// the timed run does not pay for the copy made just before it. The page cleaner is lazy on
// an idle server; flushing is forced while waiting, then set back.
func quiesce(b *testing.B, root *sql.DB, db string) {
	root.Exec("FLUSH TABLES `" + db + "`.`demographic` FOR EXPORT")
	root.Exec("UNLOCK TABLES")
	var pct float64
	root.QueryRow("SELECT @@innodb_max_dirty_pages_pct").Scan(&pct)
	root.Exec("SET GLOBAL innodb_max_dirty_pages_pct = 0")
	defer root.Exec("SET GLOBAL innodb_max_dirty_pages_pct = ?", pct)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var name string
		var dirty, history int64
		root.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'").Scan(&name, &dirty)
		root.QueryRow("SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length'").Scan(&name, &history)
		if dirty < 200 && history < 100 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("quiesce: InnoDB still busy after 30s; timing anyway")
}

// copyOf makes database name a copy of the fixture, ready to time.
func copyOf(b *testing.B, srv *mariadbtest.Server, root *sql.DB, name string) config.Database {
	root.Exec("DROP DATABASE IF EXISTS `" + name + "`")
	cfg := srv.CreateDatabase(b, name)
	if err := demofixture.Copy(context.Background(), root, "fixture", name); err != nil {
		b.Fatal(err)
	}
	quiesce(b, root, name)
	return cfg
}

// BenchmarkVersusSeed compares each migration's up and down with the seed's raw SQL, run
// with the mariadb client on an identical copy of the same fixture, on one server in one
// run. Each iteration times the seed, the floor, then up, then down, each on a fresh,
// settled copy. Metrics: seconds per run of each, and the ratios the issue sets targets for
// (up and down+backup at most 0.5x the seed). down-s is the restore; backup-s is the backup
// of the undo table down takes first, also counted in down+backup/seed. floor-s is the
// migration's own writes without undo data (see timeFloor): up/floor is what recording costs.
func BenchmarkVersusSeed(b *testing.B) {
	rows := benchRows(b)
	srv, root := serverForBench(b)
	fixture := srv.CreateDatabase(b, "fixture")
	start := time.Now()
	fdb, err := mariadb.Open(context.Background(), fixture)
	if err != nil {
		b.Fatal(err)
	}
	if err := demofixture.Fill(context.Background(), fdb, rows, 1); err != nil {
		b.Fatal(err)
	}
	fdb.Close()
	want := srv.Checksum(b, "fixture", "demographic")
	b.Logf("fixture: %d rows in %v", rows, time.Since(start).Round(time.Millisecond))

	for _, m := range All() {
		b.Run(m.Name, func(b *testing.B) {
			var seedT, floorT, upT, downT, backupT, up1T time.Duration
			n := 0
			for b.Loop() {
				n++
				seedCfg := copyOf(b, srv, root, "seed")
				seed := timeSeed(b, seedCfg, m.Seed)
				seedT += seed
				root.Exec("DROP DATABASE `seed`")

				cfg := copyOf(b, srv, root, "floor")
				floor := timeFloor(b, cfg, m)
				floorT += floor
				floorSum := srv.Checksum(b, "floor", "demographic")
				root.Exec("DROP DATABASE `floor`")

				cfg = copyOf(b, srv, root, "emr")
				u, d, bk := timeUpDown(b, cfg, m.Name, 0, true, func() {
					if got := srv.Checksum(b, "emr", "demographic"); got != floorSum {
						b.Fatalf("the floor's writes (checksum %s) are not up's (%s)", floorSum, got)
					}
				})
				upT, downT, backupT = upT+u, downT+d, backupT+bk
				b.Logf("%s round %d: seed %.2fs, floor %.2fs (%.2fx), up %.2fs (%.2fx), down %.2fs + backup %.2fs (%.2fx)", m.Name, n,
					seed.Seconds(), floor.Seconds(), floor.Seconds()/seed.Seconds(), u.Seconds(), u.Seconds()/seed.Seconds(),
					d.Seconds(), bk.Seconds(), (d+bk).Seconds()/seed.Seconds())
				if got := srv.Checksum(b, "emr", "demographic"); got != want {
					b.Fatalf("after up and down the table's checksum is %s, the fixture's %s", got, want)
				}
				root.Exec("DROP DATABASE `emr`")

				cfg = copyOf(b, srv, root, "emr1") // the same with one worker, for comparison
				u, _, _ = timeUpDown(b, cfg, m.Name, 1, true, nil)
				up1T += u
				root.Exec("DROP DATABASE `emr1`")
			}
			per := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
			b.ReportMetric(per(seedT), "seed-s")
			b.ReportMetric(per(floorT), "floor-s")
			b.ReportMetric(floorT.Seconds()/seedT.Seconds(), "floor/seed")
			b.ReportMetric(upT.Seconds()/floorT.Seconds(), "up/floor")
			b.ReportMetric(per(upT), "up-s")
			b.ReportMetric(per(downT), "down-s")
			b.ReportMetric(per(backupT), "backup-s")
			b.ReportMetric(upT.Seconds()/seedT.Seconds(), "up/seed")
			b.ReportMetric(up1T.Seconds()/seedT.Seconds(), "up1/seed")
			b.ReportMetric(downT.Seconds()/seedT.Seconds(), "down/seed")
			b.ReportMetric((downT+backupT).Seconds()/seedT.Seconds(), "down+backup/seed")
			b.Logf("%s on %d rows: seed %.2fs, floor %.2fs (%.2fx), up %.2fs (%.2fx; one worker %.2fs, %.2fx), down %.2fs (%.2fx) + backup %.2fs = %.2fx",
				m.Name, rows, per(seedT), per(floorT), floorT.Seconds()/seedT.Seconds(), per(upT), upT.Seconds()/seedT.Seconds(), per(up1T), up1T.Seconds()/seedT.Seconds(),
				per(downT), downT.Seconds()/seedT.Seconds(), per(backupT), (downT+backupT).Seconds()/seedT.Seconds())
		})
	}
}

// BenchmarkWholeUpgrade times OSCAR's whole 15->19 data upgrade of the fixture as a
// preseeded install runs it — the whole-database backup taken first, then middle-names and
// roster-enrolled-to — against the seed's SQL of both on an identical copy, in one run.
func BenchmarkWholeUpgrade(b *testing.B) {
	rows := benchRows(b)
	srv, root := serverForBench(b)
	fixture := srv.CreateDatabase(b, "fixture")
	fdb, err := mariadb.Open(context.Background(), fixture)
	if err != nil {
		b.Fatal(err)
	}
	if err := demofixture.Fill(context.Background(), fdb, rows, 1); err != nil {
		b.Fatal(err)
	}
	fdb.Close()
	var seedT, wholeT, backupT time.Duration
	n := 0
	for b.Loop() {
		n++
		seedCfg := copyOf(b, srv, root, "seed")
		for _, m := range All() {
			seedT += timeSeed(b, seedCfg, m.Seed)
		}
		root.Exec("DROP DATABASE `seed`")

		cfg := copyOf(b, srv, root, "emr")
		start := time.Now()
		if _, err := backup.Dump(context.Background(), cfg, b.TempDir(), "before-upgrade"); err != nil {
			b.Fatal(err)
		}
		backupT += time.Since(start)
		for _, m := range All() {
			timeUpDown(b, cfg, m.Name, 0, false, nil)
		}
		wholeT += time.Since(start)
		root.Exec("DROP DATABASE `emr`")
	}
	per := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	b.ReportMetric(per(seedT), "seed-s")
	b.ReportMetric(per(wholeT), "whole-s")
	b.ReportMetric(per(backupT), "backup-s")
	b.ReportMetric(wholeT.Seconds()/seedT.Seconds(), "whole/seed")
	b.Logf("whole upgrade of %d patients: backup %.2fs + both migrations = %.2fs wall; the seed's SQL of both %.2fs (%.2fx)",
		rows, per(backupT), per(wholeT), per(seedT), wholeT.Seconds()/seedT.Seconds())
}

// timeSeed runs the seed's statements with the mariadb client, as the upgrade notes say.
func timeSeed(b *testing.B, cfg config.Database, stmts []string) time.Duration {
	cmd, done, err := mariadb.Command(b.Context(), cfg, "mariadb", cfg.Name, "-e", strings.Join(stmts, ";\n")+";")
	if err != nil {
		b.Fatal(err)
	}
	defer done()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("seed SQL: %v: %s", err, out)
	}
	return d
}

// timeFloor times m's own writes with nothing recorded: the key range cut into the same
// segments and batches, walked on the same connections as up, each batch one UPDATE of the
// migrated columns to their new values (assigned simultaneously, as up's recorded values
// are) plus its progress row. It is the limit batching reaches on this machine, whatever
// undo scheme rides on it; up's time above it is what recording the undo data costs.
func timeFloor(b *testing.B, cfg config.Database, m Migration) time.Duration {
	ctx := context.Background()
	db, err := mariadb.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	e, done, err := Env{DB: Static(db), Database: cfg.Name}.engine(ctx, m)
	if err != nil {
		b.Fatal(err)
	}
	defer done()
	var set []string
	for _, c := range m.Columns {
		set = append(set, q(c.Name)+" = "+c.New)
	}
	update := fmt.Sprintf("UPDATE %s SET %s WHERE %s > ? AND %s <= ? AND %s",
		q(m.Table), strings.Join(set, ", "), q(m.Key), q(m.Key), m.changes())
	batch := func(ctx context.Context, tx *sql.Tx, lo, hi int64, _ bool) (tally, error) {
		if _, err := tx.ExecContext(ctx, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',SIMULTANEOUS_ASSIGNMENT')"); err != nil {
			return tally{}, err
		}
		_, err := tx.ExecContext(ctx, update, lo, hi)
		return tally{}, err
	}
	start := time.Now()
	err = e.session(ctx)
	if err == nil {
		_, err = e.conn.ExecContext(ctx, createProgress)
	}
	var lo, hi int64
	if err == nil {
		lo, _, err = e.minKey(ctx, m.Table)
	}
	if err == nil {
		hi, err = e.maxKey(ctx, m.Table, lo)
	}
	if err == nil {
		err = e.begin(ctx, lo, hi)
	}
	var segs []segment
	if err == nil {
		segs, err = e.segments(ctx, lo, hi)
	}
	if err == nil {
		_, err = e.walkAll(ctx, m.Table, segs, batch, progress.NewMeter(nil, false, "", progress.Rows, -1), nil)
	}
	if err != nil {
		b.Fatalf("floor of %s: %v", m.Name, err)
	}
	return time.Since(start)
}

// timeUpDown runs up and, withDown, down as `emrkit migrate` does (journaled runner, default
// batch size, workers connections for up: 0 is the default) and returns their times and the
// backup's. afterUp, when not nil, runs between them, untimed.
func timeUpDown(b *testing.B, cfg config.Database, name string, workers int, withDown bool, afterUp func()) (up, down, bk time.Duration) {
	ctx := context.Background()
	db, err := mariadb.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	j, err := journal.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	backups := b.TempDir()
	env := Env{DB: Static(db), Database: cfg.Name, Progress: io.Discard, Workers: workers,
		Backup: func(ctx context.Context, label string, tables ...string) (string, error) {
			start := time.Now()
			defer func() { bk += time.Since(start) }()
			return backup.Dump(ctx, cfg, backups, label, tables...)
		}}
	s, err := NewStep(env, name, Since)
	if err != nil {
		b.Fatal(err)
	}
	r := &step.Runner{Journal: j, Undoers: Undoers(env), Out: io.Discard, Origin: journal.OriginCommand}
	start := time.Now()
	if rep, err := r.Run(ctx, []step.Step{s}); err != nil || rep.Applied != 1 {
		b.Fatalf("up: %+v %v", rep, err)
	}
	up = time.Since(start)
	if afterUp != nil {
		afterUp()
	}
	if !withDown {
		return up, 0, 0
	}
	start = time.Now()
	if rep, err := r.Revert(ctx, func(e journal.Entry) bool { return e.ID == s.ID() }); err != nil || rep.Undone != 1 {
		b.Fatalf("down: %+v %v", rep, err)
	}
	down = time.Since(start) - bk
	return up, down, bk
}
