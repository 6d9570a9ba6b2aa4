#!/bin/sh
# fuzz.sh [FUZZTIME]: runs every Go fuzz target of the module for FUZZTIME (default 30s) each,
# one after the other, and stops at the first that fails. A failing input is left under the
# package's testdata/fuzz/<Target>/, where plain `go test` replays it from then on.
set -eu
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
go=${GO:-go}

# `go test -list` prints each package's matching names, then "ok  <package> <time>".
list=$($go test -list '^Fuzz' ./...)
targets=$(printf '%s\n' "$list" | awk '/^Fuzz/ { names = names " " $1; next }
	/^ok / { n = split(names, a, " "); for (i = 1; i <= n; i++) print $2, a[i]; names = "" }')
[ -n "$targets" ] || { echo "fuzz.sh: no fuzz targets found" >&2; exit 1; }

count=$(printf '%s\n' "$targets" | wc -l)
echo "fuzz.sh: $count targets, $fuzztime each"
printf '%s\n' "$targets" | while read -r pkg name; do
	echo "== $pkg $name"
	if ! $go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg"; then
		echo "fuzz.sh: $name in $pkg failed; its input is under that package's testdata/fuzz/$name/" >&2
		exit 1
	fi
done
echo "fuzz.sh: all $count targets passed"
