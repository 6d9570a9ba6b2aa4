#!/bin/sh
# Runs lintian on a built .deb and fails on any error or warning. Info and pedantic tags are
# printed for the record; overrides live in debian/lintian-overrides, each with its reason.
set -eu
deb=${1:?usage: lintian.sh PACKAGE.deb}
command -v lintian >/dev/null || { echo "lintian missing; run scripts/deps.sh" >&2; exit 1; }
out=$(lintian --info --pedantic --show-overrides "$deb" 2>&1 || true)
printf '%s\n' "$out"
bad=$(printf '%s\n' "$out" | grep -E '^[EW]: ' || true)
if [ -n "$bad" ]; then
	echo "lintian: errors or warnings above; fix them (or override with a written reason)" >&2
	exit 1
fi
echo "lintian: 0 errors, 0 warnings on $(basename "$deb")"
