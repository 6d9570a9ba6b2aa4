#!/bin/sh
# A throwaway Debian 12 chroot for emrkit's lifecycle tests and demo.
#
#   chroot.sh create DIR          unpack the cached image into DIR (builds the cache first if missing)
#   chroot.sh start DIR           start a session: private mount, pid and network namespaces (with
#                                 /proc mounted and only a loopback interface) that outlive one
#                                 command, so a daemon started by one `run` (MariaDB) serves the next
#   chroot.sh run DIR CMD...      run CMD inside DIR: in the session when one is started, else in
#                                 namespaces of its own that end with CMD
#   chroot.sh stop DIR            end the session: every process in it dies
#   chroot.sh destroy DIR         stop the session, remove DIR (refuses while anything is mounted below it)
#   chroot.sh image -             print the cached image's path (building it first if missing), e.g.
#                                 as piuparts' --basetgz
#   chroot.sh boot-image -        print the path of the image made to boot under systemd-nspawn
#                                 (the image above with systemd as init, dbus and sshd; building it
#                                 first if missing), for the booted-system tests
#
# Mounts live only in the namespace of one `run`, so they vanish with it (even on kill -9) and
# never leak into the host. Daemons started inside die with the pid namespace. The network
# namespace is what keeps a firewall test in the chroot from ever touching the host's firewall
# (inside it emrkit's chroot guard answers "no": pid 1 is the chroot's own, with the same root).
# The image is cached as a tarball under $EMRKIT_CACHE (default /var/cache/emrkit-test), keyed by
# suite and package list, so later runs take seconds.
set -eu

suite=bookworm
mirror=${EMRKIT_MIRROR:-http://deb.debian.org/debian}
cache=${EMRKIT_CACHE:-/var/cache/emrkit-test}
# What a fixture OSCAR host needs besides dpkg: its database, the tools emrkit's steps use, and
# an MTA (dma: Debian's small sendmail, delivering to /var/mail) for the alerts, and restic for
# the offsite copies.
extra="debconf mariadb-server mariadb-client ufw iptables iproute2 gnupg pgpgpg cron oathtool netcat-openbsd apache2 unattended-upgrades openssh-client adduser dma restic"
key=$(printf '%s %s %s\n' "$suite" "$mirror" "$extra" | sha256sum | cut -c1-12)
tarball="$cache/$suite-$key.tar.gz"
# What a booted box adds: systemd as PID 1 and the portal's sshd (../shared/systemd-nspawn.md).
boot_extra="systemd systemd-sysv dbus libpam-systemd openssh-server"
boot_key=$(printf '%s %s\n' "$key" "$boot_extra" | sha256sum | cut -c1-12)
boot_tarball="$cache/$suite-boot-$boot_key.tar.gz"

die() { echo "chroot.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and namespaces need it)"

mounted_below() {
	awk -v d="$1" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts
}

session_file() { echo "$(dirname "$1")/.$(basename "$1").session"; }

session_pid() {
	f=$(session_file "$1")
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

clean_env() {
	# shellcheck disable=SC2086
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive ${EMRKIT_CHROOT_ENV:-} "$@"
}

start_session() {
	dir=$1
	session_pid "$dir" >/dev/null && die "a session for $dir is already running"
	unshare --mount --pid --net --fork --propagation private --mount-proc="$dir/proc" \
		chroot "$dir" /bin/sh -c 'ip link set lo up 2>/dev/null || true; exec sleep infinity' \
		</dev/null >/dev/null 2>&1 &
	holder=$!
	# The session's pid 1 is unshare's child; nsenter targets it.
	for _ in $(seq 100); do
		init=$(pgrep -P "$holder" || true)
		[ -n "$init" ] && break
		sleep 0.05
	done
	[ -n "$init" ] || die "session for $dir did not start"
	echo "$init" >"$(session_file "$dir")"
}

stop_session() {
	if pid=$(session_pid "$1"); then
		kill -KILL "$pid" # pid 1 of the namespace: the kernel ends every process in it
		while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	fi
	rm -f "$(session_file "$1")"
}

run_in() {
	dir=$1; shift
	if pid=$(session_pid "$dir"); then
		# --root and --wd without a value take the session's own root and working directory (/).
		clean_env nsenter --target "$pid" --mount --pid --net --root --wd "$@"
		return
	fi
	# shellcheck disable=SC2086
	clean_env unshare --mount --pid --net --fork --propagation private --mount-proc="$dir/proc" \
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

build_boot_cache() {
	[ -f "$tarball" ] || build_cache
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf --one-file-system "$work"' EXIT
	echo "chroot.sh: building the booted $suite image (once; cached as $boot_tarball)" >&2
	mkdir "$work/root"
	tar -C "$work/root" --numeric-owner -xzf "$tarball"
	unshare --mount --pid --fork --propagation private --mount-proc="$work/root/proc" \
		chroot "$work/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $boot_extra && apt-get clean" \
		>"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; die "installing $boot_extra in the booted image failed"; }
	# A booted system starts its services; each box gets its own machine-id.
	rm -f "$work/root/usr/sbin/policy-rc.d"
	: >"$work/root/etc/machine-id"
	rm -rf "$work/root/var/lib/apt/lists/"*
	tar -C "$work/root" --numeric-owner -czf "$work/image.tar.gz" .
	mv "$work/image.tar.gz" "$boot_tarball"
	rm -rf --one-file-system "$work"
	trap - EXIT
}

cmd=${1:-}
[ $# -ge 2 ] || die "usage: chroot.sh create|start|run|stop|destroy|image|boot-image DIR [CMD...]"
dir=$(realpath -m "$2")
shift 2
cd / # a working directory outside the chroot means nothing inside it
case "$cmd" in
create)
	[ -f "$tarball" ] || build_cache
	mkdir -p "$dir"
	[ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
	tar -C "$dir" --numeric-owner -xzf "$tarball"
	;;
start)
	[ -x "$dir/bin/sh" ] || die "$dir is not a chroot made by 'chroot.sh create'"
	start_session "$dir"
	;;
run)
	[ -x "$dir/bin/sh" ] || die "$dir is not a chroot made by 'chroot.sh create'"
	run_in "$dir" "$@"
	;;
stop)
	stop_session "$dir"
	;;
destroy)
	stop_session "$dir"
	[ -d "$dir" ] || exit 0
	mounted_below "$(realpath "$dir")" && die "something is still mounted below $dir; not removing it"
	rm -rf --one-file-system "$dir"
	;;
image)
	[ -f "$tarball" ] || build_cache
	echo "$tarball"
	;;
boot-image)
	[ -f "$boot_tarball" ] || build_boot_cache
	echo "$boot_tarball"
	;;
*)
	die "unknown command $cmd (create, start, run, stop, destroy, image or boot-image)"
	;;
esac
