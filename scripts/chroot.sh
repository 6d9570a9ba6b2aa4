#!/bin/sh
# A throwaway Debian 12 chroot for emrkit's lifecycle tests and demo.
#
#   chroot.sh create DIR          unpack the cached image into DIR (builds the cache first if missing)
#   chroot.sh run DIR CMD...      run CMD inside DIR, in private mount, pid and network namespaces
#                                 with /proc mounted and only a loopback interface
#   chroot.sh destroy DIR         remove DIR (refuses while anything is mounted below it)
#
# Mounts live only in the namespace of one `run`, so they vanish with it (even on kill -9) and
# never leak into the host. Daemons started inside die with the pid namespace. The network
# namespace is what keeps a firewall test in the chroot from ever touching the host's firewall
# (inside it ischroot answers "no": pid 1 is the chroot's own).
# The image is cached as a tarball under $EMRKIT_CACHE (default /var/cache/emrkit-test), keyed by
# suite and package list, so later runs take seconds.
set -eu

suite=bookworm
mirror=${EMRKIT_MIRROR:-http://deb.debian.org/debian}
cache=${EMRKIT_CACHE:-/var/cache/emrkit-test}
# What a fixture OSCAR host needs besides dpkg: its database, and the tools emrkit's steps use.
extra="debconf mariadb-server mariadb-client ufw iptables iproute2 gnupg pgpgpg cron oathtool netcat-openbsd"
key=$(printf '%s %s %s\n' "$suite" "$mirror" "$extra" | sha256sum | cut -c1-12)
tarball="$cache/$suite-$key.tar.gz"

die() { echo "chroot.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and namespaces need it)"

mounted_below() {
	awk -v d="$1" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

run_in() {
	dir=$1; shift
	# shellcheck disable=SC2086
	unshare --mount --pid --net --fork --propagation private --mount-proc="$dir/proc" \
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive ${EMRKIT_CHROOT_ENV:-} \
		chroot "$dir" sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "$@"
}

build_cache() {
	command -v debootstrap >/dev/null || die "debootstrap missing; run scripts/deps.sh"
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf --one-file-system "$work"' EXIT
	echo "chroot.sh: building $suite image (once; cached as $tarball)" >&2
	debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
	# No daemon may start from a package's postinst while the image is built.
	printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
	chmod 0755 "$work/root/usr/sbin/policy-rc.d"
	# The image build is the one run that needs the network, so it keeps the host's network
	# namespace; the pid namespace still ends any daemon a postinst starts.
	# shellcheck disable=SC2086
	unshare --mount --pid --fork --propagation private --mount-proc="$work/root/proc" \
		chroot "$work/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $extra && apt-get clean" \
		>"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; die "installing $extra in the image failed"; }
	rm -rf "$work/root/var/lib/apt/lists/"*
	tar -C "$work/root" --numeric-owner -czf "$work/image.tar.gz" .
	mv "$work/image.tar.gz" "$tarball"
	rm -rf --one-file-system "$work"
	trap - EXIT
}

cmd=${1:-}
[ $# -ge 2 ] || die "usage: chroot.sh create|run|destroy DIR [CMD...]"
dir=$2
shift 2
case "$cmd" in
create)
	[ -f "$tarball" ] || build_cache
	mkdir -p "$dir"
	[ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
	tar -C "$dir" --numeric-owner -xzf "$tarball"
	;;
run)
	[ -x "$dir/bin/sh" ] || die "$dir is not a chroot made by 'chroot.sh create'"
	run_in "$dir" "$@"
	;;
destroy)
	[ -d "$dir" ] || exit 0
	mounted_below "$(realpath "$dir")" && die "something is still mounted below $dir; not removing it"
	rm -rf --one-file-system "$dir"
	;;
*)
	die "unknown command $cmd (create, run or destroy)"
	;;
esac
