#!/bin/sh
# `make demo`: builds two releases of the .deb and takes them through a preseeded install,
# status, upgrade (with the data migrations), backup, restore and restore test, doctor,
# downgrade and purge on a fixture OSCAR host (MariaDB with 20,000 patients +
# oscar.properties) in a throwaway Debian 12 chroot. The chroot runs in private mount, pid and
# network namespaces: the host, its database and its firewall are never touched. Needs root.
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
# Brackets show the blanks the middle-names migration trims.
show_patients() {
	in_chroot mariadb -t oscar_15 -e "SELECT demographic_no AS no, CONCAT('[', first_name, ']') AS first_name,
		CONCAT('[', middleNames, ']') AS middleNames, roster_status AS roster, roster_enrolled_to AS enrolled_to,
		provider_no AS mrp FROM demographic WHERE demographic_no BETWEEN 1 AND 12"
}
patients_dump() { in_chroot mariadb-dump --skip-dump-date --order-by-primary oscar_15 demographic; }

old=0.1.0
new=$(sed -n 's/^- semver: *//p' "$repo/debian/changelog.yaml" | head -n1)
say "build releases $old (two-factor login) and $new (+ firewall, encrypted exports, data migrations, backups) with nfpm"
make -s -C "$repo" deb VERSION=$old DIST="$work/dist"
make -s -C "$repo" deb DIST="$work/dist"
ls -l "$work"/dist/*.deb

say "throwaway Debian 12 chroot with a fixture OSCAR host (MariaDB with oscar_15 and 20,000 patients, oscar.properties)"
sh "$repo/scripts/chroot.sh" create "$root"
sh "$repo/scripts/chroot.sh" start "$root"
cp "$repo/internal/oscarfixture/oscar.sql" "$root/tmp/oscar.sql"
(cd "$repo" && go run ./internal/demofixture/demosql 20000) >"$root/tmp/demographic.sql"
cp "$work"/dist/emrkit_$old-1_*.deb "$root/tmp/emrkit-old.deb"
cp "$work"/dist/emrkit_$new-1_*.deb "$root/tmp/emrkit-new.deb"
in_chroot sh -c 'set -e
install -d -o mysql -g mysql /run/mysqld
(mariadbd --user=mysql --skip-networking >/var/log/mariadbd-demo.log 2>&1 &)
for i in $(seq 200); do mariadb -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
mariadb -e "CREATE DATABASE oscar_15" && mariadb oscar_15 </tmp/oscar.sql && mariadb oscar_15 </tmp/demographic.sql'
useradd_tomcat='useradd --system --home-dir /var/lib/tomcat9 --create-home --shell /usr/sbin/nologin tomcat'
in_chroot sh -c "$useradd_tomcat"
patients_dump >"$work/patients.orig"
mkdir -p "$root/usr/share/tomcat9"
printf '# OSCAR properties (fixture)\n# comments stay where they are\nTOTP=0\nbuttons_on_right=true\n' >"$root/usr/share/tomcat9/oscar.properties"
cp "$root/usr/share/tomcat9/oscar.properties" "$work/oscar.properties.orig"
show_2fa
show_ufw
show_patients

say "preseed (debconf-set-selections) and install $old unattended"
printf '%s\n' 'emrkit emrkit/totp-users string oscardoc nurse' 'emrkit emrkit/ssh-port string 22' \
	'emrkit emrkit/migrations multiselect middle-names, roster-enrolled-to' >"$root/tmp/preseed"
cat "$root/tmp/preseed"
in_chroot debconf-set-selections /tmp/preseed
in_chroot dpkg -i /tmp/emrkit-old.deb
diff -u "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" || true
show_2fa
echo "enrolment links for the admin: $(ls -l "$root/var/lib/emrkit/totp-enrolments.txt" | cut -d' ' -f1) /var/lib/emrkit/totp-enrolments.txt"

say "emrkit status"
in_chroot emrkit status

say "upgrade to $new: only the new releases' steps (firewall, encrypted exports, data migrations) are applied"
in_chroot dpkg -i /tmp/emrkit-new.deb
show_ufw
show_patients
in_chroot emrkit migrate list

say "emrkit backup --encrypt, then restore it into a scratch database: same checksum"
backup=$(in_chroot emrkit backup --encrypt)
ls -l "$root$backup"
in_chroot emrkit restore --yes --database oscar_restored "$backup"
in_chroot mariadb -t -e "CHECKSUM TABLE oscar_15.demographic, oscar_restored.demographic, oscar_15.security, oscar_restored.security"
in_chroot mariadb -e "DROP DATABASE oscar_restored"

say "emrkit backup verify (the weekly restore test), then emrkit doctor: the posture at a glance"
in_chroot emrkit backup verify
in_chroot emrkit 2fa sync-pins
in_chroot emrkit doctor || echo "(doctor exit $?: a control failed)"

say "downgrade to $old: the newer releases' steps are undone (after a backup), two-factor login stays"
in_chroot dpkg -i /tmp/emrkit-old.deb
show_ufw
show_2fa
show_patients
if patients_dump | cmp -s - "$work/patients.orig"; then
	echo "the demographic table is byte for byte what it was before the migrations"
else
	echo "demo: downgrade did not restore the demographic table" >&2
	exit 1
fi

say "upgrade again, then re-run the configure step: nothing changes"
in_chroot dpkg -i /tmp/emrkit-new.deb >/dev/null 2>&1
in_chroot dpkg-reconfigure -fnoninteractive emrkit
in_chroot emrkit status

say "purge: dpkg --purge"
in_chroot dpkg --purge emrkit
show_2fa
show_ufw
if cmp -s "$work/oscar.properties.orig" "$root/usr/share/tomcat9/oscar.properties" &&
	patients_dump | cmp -s - "$work/patients.orig" &&
	[ ! -e "$root/etc/emrkit" ] && [ ! -e "$root/var/lib/emrkit" ] && [ ! -e "$root/etc/cron.d/emrkit" ]; then
	say "the host is as before: oscar.properties and patients byte for byte, 2FA columns gone, firewall off, no emrkit files (backups kept in /var/backups/emrkit)"
else
	echo "demo: purge did not restore the host" >&2
	exit 1
fi
