#!/bin/sh
# nsrun.sh PRIV HOSTNET HOSTMNT CMD [ARG...]
#
# Runs CMD with private copies of ufw's state (PRIV/etc/ufw, PRIV/etc/default/ufw, PRIV/lib/ufw)
# mounted over the real paths and a private /run (ufw's lock file). It must be started as
#   ip netns exec NS unshare --mount --propagation private sh nsrun.sh ...
# and refuses to do anything if it is still in the host's network or mount namespace
# (HOSTNET, HOSTMNT are `readlink /proc/self/ns/{net,mnt}` of the test process): the host's
# firewall and /etc/ufw must never be touched.
#
# NSRUN_BREAK_IPTABLES=1 also mounts /bin/false over the iptables binaries, to test how
# emrkit reports an unusable iptables.
set -eu
priv=$1 hostnet=$2 hostmnt=$3
shift 3
net=$(readlink /proc/self/ns/net)
mnt=$(readlink /proc/self/ns/mnt)
if [ "$net" = "$hostnet" ] || [ "$mnt" = "$hostmnt" ]; then
	echo "nsrun: refusing to run: still in the host's network ($net) or mount ($mnt) namespace" >&2
	exit 99
fi
for d in etc/ufw etc/default/ufw lib/ufw; do
	[ -e "$priv/$d" ] || { echo "nsrun: $priv/$d is missing" >&2; exit 99; }
done
mount --bind "$priv/etc/ufw" /etc/ufw
mount --bind "$priv/etc/default/ufw" /etc/default/ufw
mount --bind "$priv/lib/ufw" /lib/ufw
mount -t tmpfs -o mode=0755 nsrun-run /run
mountpoint -q /etc/ufw || { echo "nsrun: /etc/ufw is not a private mount" >&2; exit 99; }
if [ "${NSRUN_BREAK_IPTABLES:-}" = 1 ]; then
	for b in /usr/sbin/iptables /usr/sbin/ip6tables /usr/sbin/iptables-restore /usr/sbin/ip6tables-restore; do
		mount --bind /bin/false "$(readlink -f "$b")"
	done
fi
exec "$@"
