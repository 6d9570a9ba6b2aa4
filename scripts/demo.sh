#!/bin/sh
# `make demo`: builds the .deb and takes it through install, status, a re-run and purge on a
# fixture OSCAR host (MariaDB + oscar.properties) in a throwaway Debian 12 chroot (private
# namespaces; the host is never touched). Needs root.
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

say "throwaway Debian 12 chroot with a fixture OSCAR host (MariaDB with oscar_15, oscar.properties)"
sh "$repo/scripts/chroot.sh" create "$root"
sh "$repo/scripts/chroot.sh" start "$root"
cp "$repo/internal/oscarfixture/oscar.sql" "$root/tmp/oscar.sql"
in_chroot sh -c 'set -e
install -d -o mysql -g mysql /run/mysqld
(mariadbd --user=mysql --skip-networking >/var/log/mariadbd-demo.log 2>&1 &)
for i in $(seq 200); do mariadb -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
mariadb -e "CREATE DATABASE oscar_15" && mariadb oscar_15 </tmp/oscar.sql'
show_2fa() { in_chroot mariadb -t oscar_15 -e "SELECT user_name, pin, totp_enabled, IF(totp_secret IS NULL, NULL, 'set') AS totp_secret FROM security" 2>/dev/null ||
	in_chroot mariadb -t oscar_15 -e "SELECT user_name, pin FROM security"; }
show_2fa
mkdir -p "$root/usr/share/tomcat9"
printf '# OSCAR properties (fixture)\n# comments stay where they are\nTOTP=0\nbuttons_on_right=true\n' >"$root/usr/share/tomcat9/oscar.properties"
cp "$root/usr/share/tomcat9/oscar.properties" "$work/oscar.properties.orig"
cp "$deb" "$root/tmp/emrkit.deb"
cat "$root/usr/share/tomcat9/oscar.properties"

say "install: dpkg -i"
in_chroot dpkg -i /tmp/emrkit.deb
diff -u "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" || true

show_2fa
echo "enrolment URIs for the admin (root-only): $(ls -l "$root/var/lib/emrkit/totp-enrolments.txt" | cut -d' ' -f1) /var/lib/emrkit/totp-enrolments.txt"

say "emrkit status"
in_chroot emrkit status

say "re-run the configure step: nothing changes"
in_chroot dpkg-reconfigure -fnoninteractive emrkit

say "purge: dpkg --purge"
in_chroot dpkg --purge emrkit
show_2fa
if cmp -s "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" &&
	[ ! -e "$root/etc/emrkit" ] && [ ! -e "$root/var/lib/emrkit" ]; then
	say "oscar.properties is back byte for byte, the 2FA columns are gone, no emrkit files left (backups kept in /var/backups/emrkit)"
else
	echo "demo: purge did not restore the host" >&2
	exit 1
fi
