#!/usr/bin/env bash
# Build jsedge and run its test suite on ARM under emulation (Debian qemu-user-static + debootstrap),
# on this x86-64 machine; no Docker.
#
#   tools/test-arm.sh [arm64|armhf] [all | pytest args...]
#
# Under emulation every Python process starts ~20x slower and the whole suite (which spawns hundreds of
# servers) takes hours, so by default the script runs the platform-sensitive tiers: unit and property
# tests of every twin, the store (contract, crash with kill -9, recovery, power loss, corruption, the
# cross-architecture store), consumers on a fake clock, and the server's command line end to end.
# `all` runs the whole suite.
#
# arm64: builds the compiled twins and runs the suite compiled, then pure Python
#        (JSEDGE_NO_EXTENSIONS=1). armhf (32-bit, Raspberry Pi armv7): pure-Python suite only by
#        default (JSEDGE_ARM_COMPILED=1 adds the compiled run). Root is needed (chroot, binfmt).
# Work dir: $JSEDGE_ARM_DIR (default /var/tmp/jsedge-platforms, deliberately OUTSIDE the repository:
# while a chroot has /proc and /dev mounted, a recursive copy of the tree would read them forever).
# The bootstrapped rootfs is kept as a tarball there, so later runs skip debootstrap (~5 min).
set -euo pipefail
ARCH=${1:-arm64}
shift || true
case "$ARCH" in arm64|armhf) ;; *) echo "usage: $0 [arm64|armhf] [pytest args...]" >&2; exit 2 ;; esac
TOP=$(cd "$(dirname "$0")/.." && pwd)
W=${JSEDGE_ARM_DIR:-/var/tmp/jsedge-platforms}
case "$(realpath -m "$W")/" in "$TOP"/*) echo "JSEDGE_ARM_DIR must be outside the repository ($TOP)" >&2; exit 2 ;; esac
R=$W/$ARCH
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=python3,python3-dev,python3-venv,python3-pip,gcc,libc6-dev,libffi-dev,make,ca-certificates,git
mkdir -p "$W"
start=$(date +%s)
step() { echo "=== [$(( $(date +%s) - start ))s] $*"; }

step "host setup (qemu-user-static, binfmt, debootstrap)"
if ! command -v debootstrap >/dev/null || ! [ -e /usr/bin/qemu-aarch64-static ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    qemu-user-static binfmt-support debootstrap zstd >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
update-binfmts --enable qemu-arm >/dev/null 2>&1 || true

if ! [ -x "$R/usr/bin/python3" ]; then
  if [ -f "$W/$ARCH-rootfs.tar.zst" ]; then
    step "restoring cached $ARCH rootfs"
    mkdir -p "$R" && tar -C "$R" --zstd -xf "$W/$ARCH-rootfs.tar.zst"
  else
    step "debootstrap $ARCH (several minutes)"
    debootstrap --arch="$ARCH" --variant=minbase --include=$PKGS bookworm "$R" "$MIRROR" >/dev/null
    # debootstrap may leave its own mounts behind: never archive a live /proc or /dev.
    for m in proc sys dev/pts dev; do while mountpoint -q "$R/$m"; do umount "$R/$m"; done; done
    tar -C "$R" --zstd --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -cf "$W/$ARCH-rootfs.tar.zst" .
  fi
fi
cp /etc/resolv.conf "$R/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
mountpoint -q "$R/dev" || mount --bind /dev "$R/dev"
cleanup() { for m in proc dev; do while mountpoint -q "$R/$m"; do umount "$R/$m" || break; done; done; }
trap cleanup EXIT
# The reference nats-server on PyPI is 2.11 for aarch64 and absent for armv7: the differential
# tests (written against 2.15) run on x86-64 only.
arm() { chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 JSEDGE_NO_ORACLE=1 PATH=/root/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
step "machine: $(arm uname -m)"

step "copying the committed tree (HEAD) into the chroot"
rm -rf "$R/src" && mkdir -p "$R/src"
(cd "$TOP" && git archive --format=tar HEAD | tar -C "$R/src" -xf -)

step "venv and install (builds the Cython twins under emulation)"
COMPILED=1
if [ "$ARCH" = armhf ] && [ "${JSEDGE_ARM_COMPILED:-0}" != 1 ]; then COMPILED=0; fi
arm bash -c "cd /src && { [ -x /root/venv/bin/python ] || python3 -m venv /root/venv; } \
  && pip install -q --upgrade pip \
  && $( [ $COMPILED = 1 ] && echo "pip install -q -e '.[test]'" || echo "JSEDGE_NO_EXTENSIONS=1 pip install -q -e '.[test]'" )"

DEFAULT_TESTS="tests/unit tests/property tests/store tests/consumers/test_fake_clock.py tests/e2e/test_server_command_line.py"
if [ "${1:-}" = all ]; then shift; set -- "$@"; elif [ $# -eq 0 ]; then set -- $DEFAULT_TESTS; fi
set -- -o timeout=600 "$@"

status=0
if [ $COMPILED = 1 ]; then
  step "test suite, compiled twins"
  arm bash -c "cd /src && python -m pytest -q -p no:cacheprovider $*" || status=$?
fi
step "test suite, pure Python"
arm bash -c "cd /src && JSEDGE_NO_EXTENSIONS=1 python -m pytest -q -p no:cacheprovider $*" || status=$?
step "cross-architecture store: written on $ARCH, verified on the host"
rm -rf "$R/tmp/arm-store"
arm bash -c "cd /src && python tools/store_fixture.py write /tmp/arm-store" || status=$?
(cd "$TOP" && python3 tools/store_fixture.py verify "$R/tmp/arm-store") || status=$?
step "done (exit $status)"
exit $status
