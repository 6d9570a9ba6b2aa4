#!/bin/sh
# `make demo`: builds two releases of the .deb and takes them through a preseeded install,
# status, upgrade, downgrade and purge on a fixture OSCAR host (MariaDB + oscar.properties)
# in a throwaway Debian 12 chroot. The chroot runs in private mount, pid and network
# namespaces: the host, its database and its firewall are never touched. Needs root.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo make demo): it builds a chroot" >&2; exit 1; }

work=$(mktemp -d /tmp/emrkit-demo.XXXXXX)
root="$work/root"
cleanup() { sh "$repo/scripts/chroot.sh" destroy "$root" && rm -rf --one-file-system "$work"; }
trap cleanup EXIT
in_chroot() { sh "$repo/scripts/chroot.sh" run "$root" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show_2fa() {
	in_chroot mariadb -t oscar_15 -e "SELECT user_name, pin, totp_enabled, IF(totp_secret IS NULL, NULL, 'set') AS totp_secret FROM security" 2>/dev/null ||
		in_chroot mariadb -t oscar_15 -e "SELECT user_name, pin FROM security"
}
show_ufw() { in_chroot ufw status | sed 's/^/    /'; }

say "build releases 0.1.0 (two-factor login) and 0.2.0 (+ firewall) with nfpm"
make -s -C "$repo" deb VERSION=0.1.0 DIST="$work/dist"
make -s -C "$repo" deb DIST="$work/dist"
ls -l "$work"/dist/*.deb

say "throwaway Debian 12 chroot with a fixture OSCAR host (MariaDB with oscar_15, oscar.properties)"
sh "$repo/scripts/chroot.sh" create "$root"
sh "$repo/scripts/chroot.sh" start "$root"
cp "$repo/internal/oscarfixture/oscar.sql" "$root/tmp/oscar.sql"
cp "$work"/dist/emrkit_0.1.0-1_*.deb "$root/tmp/emrkit-0.1.0.deb"
cp "$work"/dist/emrkit_0.2.0-1_*.deb "$root/tmp/emrkit-0.2.0.deb"
in_chroot sh -c 'set -e
install -d -o mysql -g mysql /run/mysqld
(mariadbd --user=mysql --skip-networking >/var/log/mariadbd-demo.log 2>&1 &)
for i in $(seq 200); do mariadb -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
mariadb -e "CREATE DATABASE oscar_15" && mariadb oscar_15 </tmp/oscar.sql'
mkdir -p "$root/usr/share/tomcat9"
printf '# OSCAR properties (fixture)\n# comments stay where they are\nTOTP=0\nbuttons_on_right=true\n' >"$root/usr/share/tomcat9/oscar.properties"
cp "$root/usr/share/tomcat9/oscar.properties" "$work/oscar.properties.orig"
show_2fa
show_ufw

say "preseed (debconf-set-selections) and install 0.1.0 unattended"
printf 'emrkit emrkit/totp-users string oscardoc nurse\nemrkit emrkit/ssh-port string 22\n' >"$root/tmp/preseed"
cat "$root/tmp/preseed"
in_chroot debconf-set-selections /tmp/preseed
in_chroot dpkg -i /tmp/emrkit-0.1.0.deb
diff -u "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" || true
show_2fa
echo "enrolment links for the admin: $(ls -l "$root/var/lib/emrkit/totp-enrolments.txt" | cut -d' ' -f1) /var/lib/emrkit/totp-enrolments.txt"

say "emrkit status"
in_chroot emrkit status

say "upgrade to 0.2.0: only the new release's steps (the firewall) are applied"
in_chroot dpkg -i /tmp/emrkit-0.2.0.deb
show_ufw

say "downgrade to 0.1.0: the newer release's steps are undone, two-factor login stays"
in_chroot dpkg -i /tmp/emrkit-0.1.0.deb
show_ufw
show_2fa

say "upgrade again, then re-run the configure step: nothing changes"
in_chroot dpkg -i /tmp/emrkit-0.2.0.deb >/dev/null
in_chroot dpkg-reconfigure -fnoninteractive emrkit
in_chroot emrkit status

say "purge: dpkg --purge"
in_chroot dpkg --purge emrkit
show_2fa
show_ufw
if cmp -s "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" &&
	[ ! -e "$root/etc/emrkit" ] && [ ! -e "$root/var/lib/emrkit" ] && [ ! -e "$root/etc/cron.d/emrkit" ]; then
	say "the host is as before: oscar.properties byte for byte, 2FA columns gone, firewall off, no emrkit files (backups kept in /var/backups/emrkit)"
else
	echo "demo: purge did not restore the host" >&2
	exit 1
fi
