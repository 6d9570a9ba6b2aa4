#!/bin/sh
# Configure speed, measured in one run in a throwaway Debian 12 chroot on a fixture OSCAR host
# (MariaDB with 100,000 patients and 200 security users, all of them enrolled in 2FA; PGP in
# public-key mode, so no key generation is timed; the firewall applied with ufw in the
# chroot's own network namespace):
#
#   bare       dpkg -i of emrkit-bare: the same files as emrkit's .deb, no maintainer scripts
#   configure  preseeded dpkg -i of emrkit (unpack + postinst configure, the first apply)
#   no-op      dpkg-reconfigure -fnoninteractive emrkit right after it
#   apply      `emrkit apply` on the installed package after `emrkit revert --all` (first)
#   apply-noop `emrkit apply` again
#
# Targets: configure - bare <= 2 s, no-op <= 0.3 s. Each figure is the median of ROUNDS (3)
# rounds, bare and configure alternating in each round. Usage: scripts/bench-configure.sh
# [ROUNDS]; run as root after scripts/deps.sh. Takes about 3 minutes on 2 cores.
# EMRKIT_BENCH_FIREWALL=false leaves the firewall out (to tell its share of the time).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
firewall=${EMRKIT_BENCH_FIREWALL:-true}
[ "$(id -u)" -eq 0 ] || { echo "bench-configure: run as root: it builds a chroot" >&2; exit 1; }

work=$(mktemp -d /tmp/emrkit-bench.XXXXXX)
root="$work/root"
cleanup() { sh "$repo/scripts/chroot.sh" destroy "$root" && rm -rf --one-file-system "$work"; }
trap cleanup EXIT
in_chroot() { sh "$repo/scripts/chroot.sh" run "$root" "$@"; }
# timed CMD...: milliseconds CMD took inside the chroot (its output is dropped; failure stops).
timed() {
	in_chroot sh -c 's=$(date +%s%N); "$@" >/tmp/timed.log 2>&1 || { cat /tmp/timed.log >&2; exit 1; }
		e=$(date +%s%N); echo $(((e - s) / 1000000))' sh "$@"
}
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

make -s -C "$repo" deb DIST="$work/dist" >/dev/null
deb=$(ls "$work"/dist/emrkit_*.deb)
# emrkit-bare: the same files (and so the same size to unpack), no scripts, no templates.
mkdir "$work/bare"
dpkg-deb -R "$deb" "$work/bare"
rm -f "$work"/bare/DEBIAN/config "$work"/bare/DEBIAN/templates "$work"/bare/DEBIAN/*inst "$work"/bare/DEBIAN/*rm
sed -i 's/^Package: emrkit$/Package: emrkit-bare/; /^Depends:/d; /^Recommends:/d' "$work/bare/DEBIAN/control"
dpkg-deb -b -Zgzip "$work/bare" "$work/emrkit-bare.deb" >/dev/null
echo "bench-configure: $(basename "$deb") $(stat -c %s "$deb") bytes, emrkit-bare.deb $(stat -c %s "$work/emrkit-bare.deb") bytes"

sh "$repo/scripts/chroot.sh" create "$root"
sh "$repo/scripts/chroot.sh" start "$root"
cp "$deb" "$root/tmp/emrkit.deb"
cp "$work/emrkit-bare.deb" "$root/tmp/emrkit-bare.deb"
cp "$repo/internal/oscarfixture/oscar.sql" "$root/tmp/oscar.sql"
(cd "$repo" && go run ./internal/demofixture/demosql 100000) >"$root/tmp/demographic.sql"
users=$(seq -f 'provider%03g' 1 197 | tr '\n' ' ')
values=$(for u in $users; do printf "('%s','{sha}x','%s','%s'),\n" "$u" "${u#provider}" "${u#provider}"; done | sed '$ s/,$/;/')
printf 'INSERT INTO security (user_name, password, provider_no, pin) VALUES\n%s\n' "$values" >"$root/tmp/users.sql"
in_chroot sh -c 'set -e
install -d -o mysql -g mysql /run/mysqld
(mariadbd --user=mysql --skip-networking >/var/log/mariadbd-bench.log 2>&1 &)
for i in $(seq 200); do mariadb -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
mariadb -e "CREATE DATABASE oscar_15"
mariadb oscar_15 </tmp/oscar.sql
mariadb oscar_15 </tmp/users.sql
mariadb oscar_15 </tmp/demographic.sql
useradd --system --home-dir /var/lib/tomcat9 --create-home --shell /usr/sbin/nologin tomcat
mkdir -p /usr/share/tomcat9
printf "# OSCAR properties (fixture)\nTOTP=0\n" >/usr/share/tomcat9/oscar.properties
export GNUPGHOME=$(mktemp -d)
gpg --batch --quiet --passphrase "" --quick-gen-key "Clinic export <exports@clinic.invalid>" future-default default never
gpg --batch --armor --export exports@clinic.invalid >/root/export.asc'
counts=$(in_chroot mariadb -N oscar_15 -e "SELECT (SELECT COUNT(*) FROM security), (SELECT COUNT(*) FROM demographic)")
echo "bench-configure: fixture host: security users, patients: $counts"
all_users="oscardoc nurse doc2 $users"
printf '%s\n' "emrkit emrkit/totp-users string $all_users" 'emrkit emrkit/ssh-port string 22' \
	'emrkit emrkit/pgp-mode select public-key' 'emrkit emrkit/pgp-public-key string /root/export.asc' \
	"emrkit emrkit/firewall boolean $firewall" >"$root/tmp/preseed"
in_chroot debconf-set-selections /tmp/preseed

bare="" configure="" noop="" apply="" applynoop=""
for r in $(seq "$rounds"); do
	bare="$bare $(timed dpkg -i /tmp/emrkit-bare.deb)"
	in_chroot dpkg --purge emrkit-bare >/dev/null
	configure="$configure $(timed env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/emrkit.deb)"
	noop="$noop $(timed dpkg-reconfigure -fnoninteractive emrkit)"
	in_chroot emrkit revert --all >/dev/null
	apply="$apply $(timed emrkit apply)"
	applynoop="$applynoop $(timed emrkit apply)"
	in_chroot emrkit status >/dev/null
	in_chroot dpkg --purge emrkit >/dev/null
	in_chroot debconf-set-selections /tmp/preseed
	echo "bench-configure: round $r: bare$bare | configure$configure | no-op$noop | apply$apply | apply no-op$applynoop (ms)"
done
b=$(echo "$bare" | median) c=$(echo "$configure" | median) n=$(echo "$noop" | median)
a=$(echo "$apply" | median) an=$(echo "$applynoop" | median)
awk -v b="$b" -v c="$c" -v n="$n" -v a="$a" -v an="$an" -v fw="$firewall" 'BEGIN {
	printf "\nconfigure benchmark (median of rounds, 100,000 patients, 200 users enrolled, pgp public-key, firewall %s)\n", fw
	printf "%-44s %9s %s\n", "", "ms", ""
	printf "%-44s %9d\n", "dpkg -i emrkit-bare (same files, no scripts)", b
	printf "%-44s %9d   %.2fx bare, +%d ms (target <= +2000 ms)\n", "dpkg -i emrkit (preseeded, configure)", c, c / b, c - b
	printf "%-44s %9d   (target <= 300 ms)\n", "dpkg-reconfigure (no-op)", n
	printf "%-44s %9d\n", "emrkit apply (first, after revert --all)", a
	printf "%-44s %9d\n", "emrkit apply (no-op)", an
}'
