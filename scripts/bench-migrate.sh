#!/bin/sh
# Benchmarks of the OSCAR data migrations and backups on a million fixture rows, each against
# what it replaces, measured in one run on one private MariaDB per package:
#   migrate up/down  vs the seed's raw SQL run with the mariadb client (up/seed, down+backup/seed),
#                    and vs the floor: the same writes batched on the same connections with no
#                    undo data (floor/seed, up/floor)
#   whole upgrade    backup + both migrations vs the seed's SQL of both (target: < 60 s)
#   backup --encrypt vs mariadb-dump | gzip                            (target: >= 2x throughput)
#   restore into a new database, and over it, vs mariadb DB < dump.sql (goal: >= 2x; copies
#                    identical; ROUNDS rounds, the speed-ups of the summed times)
# Usage: scripts/bench-migrate.sh [ROWS] [ROUNDS]   (default 1000000 rows, 3 rounds; run as
# root, after scripts/deps.sh). The migrations run ROUNDS rounds, each timing seed, floor, up
# and down back to back on fresh copies, and report the ratio of the summed times: a single
# round's ratio moves by 20% or more on a shared 2-core machine. Takes about 17 minutes
# on 2 cores. The ratios are the up/seed, down+backup/seed and throughput-vs-gzip columns.
set -eu
cd "$(dirname "$0")/.."
rows=${1:-1000000}
rounds=${2:-3}
export EMRKIT_BENCH_ROWS=$rows
${GO:-go} test -count=1 -run '^$' -bench 'VersusSeed' -benchtime "${rounds}x" -timeout 90m ./pkg/migrate
${GO:-go} test -count=1 -run '^$' -bench 'VersusPlainClient' -benchtime "${rounds}x" -timeout 60m ./pkg/backup
exec ${GO:-go} test -count=1 -run '^$' -bench 'WholeUpgrade|VersusGzip|VersusDumpRestore' -benchtime 1x \
	-timeout 60m ./pkg/migrate ./pkg/backup
