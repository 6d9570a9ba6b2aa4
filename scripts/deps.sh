#!/bin/sh
# Installs every system package emrkit's build, tests and demo need, when missing.
# Run as root on Debian 12 (bookworm). Idempotent: installs only what is absent.
set -eu

pkgs="
ca-certificates make git
mariadb-server mariadb-client
debootstrap lintian piuparts dpkg-dev
ufw iptables iproute2 netcat-openbsd
gnupg pgpgpg oathtool
cron debconf-utils
apache2 libapache2-mod-php curl openssl
openssh-client openssh-server adduser
systemd-container restic
"

missing=""
for p in $pkgs; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	echo "deps: all system packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing:$missing; run this script as root (sudo $0)" >&2
	exit 1
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the host's own mariadb and apache2 from being started by the install: tests
# run their own private servers and never touch the host's data.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
