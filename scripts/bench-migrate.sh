#!/bin/sh
# Benchmarks of the OSCAR data migrations and backups on a million fixture rows, each against
# what it replaces, measured in one run on one private MariaDB per package:
#   migrate up/down  vs the seed's raw SQL run with the mariadb client (up/seed, down+backup/seed),
#                    and vs the floor: the same writes batched on the same connections with no
#                    undo data (floor/seed, up/floor)
#   whole upgrade    backup + both migrations vs the seed's SQL of both (target: < 60 s)
#   backup --encrypt vs mariadb-dump | gzip                            (target: >= 2x throughput)
# Usage: scripts/bench-migrate.sh [ROWS]   (default 1000000; run as root, after scripts/deps.sh)
# Takes about 7 minutes on 2 cores. The ratios are the up/seed, down/seed and
# throughput-vs-gzip columns.
set -eu
cd "$(dirname "$0")/.."
rows=${1:-1000000}
EMRKIT_BENCH_ROWS=$rows exec ${GO:-go} test -count=1 -run '^$' -bench 'VersusSeed|WholeUpgrade|VersusGzip|VersusDumpRestore' -benchtime 1x \
	-timeout 60m ./pkg/migrate ./pkg/backup
