#!/bin/sh
# Installs, from Debian's packages, what building, running and testing
# httpgate need, and nothing when it is all there already.
set -eu
PKGS="gcc make pkg-config libsystemd-dev libgnutls28-dev systemd systemd-container picolisp curl
      gnutls-bin python3 python3-websockets iproute2 mandoc util-linux procps clang libclang-rt-14-dev musl-tools
      goaccess"
missing=""
for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
        echo "httpgate: missing packages:$missing (run as root to install them)" >&2
        exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $missing >/dev/null
