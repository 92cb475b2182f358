#!/usr/bin/env bash
# Installs the OS packages the tests start as real peers, when they are missing:
#   redis-server  (shared state of hub replicas: tests/cluster_fixtures.py)
#   haproxy       (a round-robin balancer in front of hub replicas)
# Run by `make test` and `make test-fast` before pytest, and by the Redis fixture when a test
# needs Redis and it is missing. Debian/Ubuntu only (apt-get), as root. Anything else: it says
# why on stderr and exits 0, and the tests that need the package skip with that reason.
# Safe to run at once from several processes (one installs under a lock, the others wait), and
# it never starts a system service (a temporary policy-rc.d where none exists).
set -euo pipefail

PACKAGES=(redis-server haproxy)
LOCK=${MCPHUB_INSTALL_LOCK:-/tmp/mcphub-install-test-services.lock}

have() {  # have PACKAGE: its program is installed
    case $1 in
        redis-server) command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] ;;
        haproxy) command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] ;;
    esac
}

missing() {
    local wanted=()
    for package in "${PACKAGES[@]}"; do
        have "$package" || wanted+=("$package")
    done
    echo "${wanted[@]}"
}

read -r -a wanted <<<"$(missing)"
[ ${#wanted[@]} -eq 0 ] && exit 0

say() { echo "install-test-services: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "not root, cannot install ${wanted[*]}: the tests that need them will be skipped (install them with: sudo apt-get install -y ${wanted[*]})"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get on this machine, cannot install ${wanted[*]}: the tests that need them will be skipped"
    exit 0
fi

exec 9>"$LOCK"
flock -w 900 9 || { say "waited 900 s for another install to finish; giving up"; exit 0; }
read -r -a wanted <<<"$(missing)"  # another process may have installed them meanwhile
[ ${#wanted[@]} -eq 0 ] && exit 0

cleanup=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Package scripts must not start redis-server or haproxy as system services.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    cleanup="/usr/sbin/policy-rc.d"
fi
trap '[ -n "$cleanup" ] && rm -f "$cleanup"' EXIT

say "installing ${wanted[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt_options=(-q -o DPkg::Lock::Timeout=600)
if ! apt-get "${apt_options[@]}" update >/dev/null \
    || ! apt-get "${apt_options[@]}" install -y --no-install-recommends "${wanted[@]}" >/dev/null; then
    say "apt-get could not install ${wanted[*]}: the tests that need them will be skipped"
    exit 0
fi
read -r -a wanted <<<"$(missing)"
if [ ${#wanted[@]} -ne 0 ]; then
    say "still missing after apt-get: ${wanted[*]}: the tests that need them will be skipped"
fi
exit 0
