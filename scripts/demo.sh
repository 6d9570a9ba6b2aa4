#!/bin/sh
# `make demo`: builds the .deb and takes it through install, status, a re-run and purge on a
# fixture OSCAR host in a throwaway Debian 12 chroot (private namespaces; the host is never
# touched). Needs root.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo make demo): it builds a chroot" >&2; exit 1; }

work=$(mktemp -d /tmp/emrkit-demo.XXXXXX)
root="$work/root"
cleanup() { sh "$repo/scripts/chroot.sh" destroy "$root" && rm -rf --one-file-system "$work"; }
trap cleanup EXIT
in_chroot() { sh "$repo/scripts/chroot.sh" run "$root" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "build the package (nfpm library, reproducible)"
make -s -C "$repo" deb DIST="$work/dist"
deb=$(ls "$work"/dist/emrkit_*.deb)
ls -l "$deb"

say "throwaway Debian 12 chroot with a fixture OSCAR host"
sh "$repo/scripts/chroot.sh" create "$root"
mkdir -p "$root/usr/share/tomcat9"
printf '# OSCAR properties (fixture)\n# comments stay where they are\nTOTP=0\nbuttons_on_right=true\n' >"$root/usr/share/tomcat9/oscar.properties"
cp "$root/usr/share/tomcat9/oscar.properties" "$work/oscar.properties.orig"
cp "$deb" "$root/tmp/emrkit.deb"
cat "$root/usr/share/tomcat9/oscar.properties"

say "install: dpkg -i"
in_chroot dpkg -i /tmp/emrkit.deb
diff -u "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" || true

say "emrkit status"
in_chroot emrkit status

say "re-run the configure step: nothing changes"
in_chroot dpkg-reconfigure -fnoninteractive emrkit

say "purge: dpkg --purge"
in_chroot dpkg --purge emrkit
if cmp -s "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" &&
	[ ! -e "$root/etc/emrkit" ] && [ ! -e "$root/var/lib/emrkit" ]; then
	say "oscar.properties is back byte for byte; no emrkit files left"
else
	echo "demo: purge did not restore the host" >&2
	exit 1
fi
