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
# The Debian root file system under emulation comes from tools/arm-rootfs.sh (work dir
# $JSEDGE_ARM_DIR, default /var/tmp/jsedge-platforms; the rootfs is cached there as a tarball).
set -euo pipefail
ARCH=${1:-arm64}
shift || true
case "$ARCH" in arm64|armhf) ;; *) echo "usage: $0 [arm64|armhf] [pytest args...]" >&2; exit 2 ;; esac
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tools/arm-rootfs.sh"

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
