#!/usr/bin/env bash
# Build jsedge's wheels and one-file zipapps per architecture into dist/, each smoke-tested where it
# was built (tools/artifact_smoke.py: server with JetStream up, a stream added, a message stored and
# read back through the same artifact's CLI):
#
#   tools/build-wheels.sh [host] [arm64] [armhf]      (no argument: all three)
#
#   host   this machine (x86_64 here): dist/jsedge-<v>-cp311-cp311-linux_x86_64.whl and the .pyz
#   arm64  Raspberry Pi 3/4/5 with a 64-bit OS, other aarch64 boards: ..._aarch64.whl
#   armhf  Raspberry Pi OS 32-bit (armv7): ..._armv7l.whl
#
# The ARM builds run in Debian bookworm root file systems under qemu-user emulation
# (tools/arm-rootfs.sh, shared with tools/test-arm.sh; root needed; the first run bootstraps each
# rootfs, ~5 min, cached after). Bookworm's Python is 3.11, the interpreter of Raspberry Pi OS
# bookworm, so a wheel built there installs on a Pi with `pip install jsedge-…-linux_aarch64.whl`.
# The wheels are tagged linux_<machine> (built against bookworm's glibc 2.36), not manylinux: they
# are for Debian-family boards, not for PyPI. Each wheel holds the compiled twins of its
# architecture; the zipapp (tools/build_zipapp.py) holds jsedge and its dependencies for it.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
OUT=$TOP/dist
mkdir -p "$OUT"
[ $# -eq 0 ] && set -- host arm64 armhf
status=0

build_host() {
  echo "=== host ($(uname -m)): wheel"
  local venv
  venv=$(mktemp -d)
  python3 -m pip wheel -q --no-deps -w "$OUT" "$TOP"
  local wheel
  wheel=$(ls -t "$OUT"/jsedge-*-linux_"$(uname -m)".whl | head -1)
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$wheel"
  (cd "$venv" && "$venv/bin/python" "$TOP/tools/artifact_smoke.py" -- "$venv/bin/python" -m jsedge) || status=1
  echo "=== host: zipapp"
  "$venv/bin/pip" install -q shiv packaging
  (cd "$TOP" && "$venv/bin/python" tools/build_zipapp.py --from-env) || status=1
  local pyz
  pyz=$(ls -t "$OUT"/jsedge-*-"$(uname -m)".pyz | head -1)
  HOME=$venv SHIV_ROOT=$venv/shiv python3 "$TOP/tools/artifact_smoke.py" -- python3 -I "$pyz" || status=1
  rm -rf "$venv"
}

build_arm() {
  ARCH=$1
  (
    . "$TOP/tools/arm-rootfs.sh"
    step "wheel (builds the Cython twins under emulation)"
    arm bash -c "cd /src && rm -rf /root/wheel-venv && python3 -m venv /root/wheel-venv \
      && /root/wheel-venv/bin/pip install -q --upgrade pip \
      && /root/wheel-venv/bin/pip wheel -q --no-deps -w /src/dist /src"
    step "smoke test of the wheel in a fresh venv"
    # PyPI has no armv7 wheel of PyNaCl (Raspberry Pi OS takes one from piwheels): build it against
    # Debian's libsodium instead of compiling the bundled one (half an hour under emulation)
    arm bash -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsodium-dev >/dev/null"
    arm bash -c "cd /tmp && SODIUM_INSTALL=system /root/wheel-venv/bin/pip install -q /src/dist/jsedge-*.whl shiv packaging \
      && /root/wheel-venv/bin/python /src/tools/artifact_smoke.py -- /root/wheel-venv/bin/python -m jsedge"
    step "zipapp (the twins built in the tree first), and its smoke test under python3 -I"
    arm bash -c "cd /src && /root/wheel-venv/bin/pip install -q 'Cython>=3.0,<3.4' 'setuptools>=77' \
      && /root/wheel-venv/bin/python setup.py -q build_ext --inplace \
      && /root/wheel-venv/bin/python tools/build_zipapp.py --from-env \
      && SHIV_ROOT=/tmp/shiv python3 tools/artifact_smoke.py -- python3 -I \$(ls -t dist/*.pyz | head -1)"
    cp "$R"/src/dist/*.whl "$R"/src/dist/*.pyz "$OUT"/
  ) || status=1
}

for target in "$@"; do
  case "$target" in
    host) build_host ;;
    arm64|armhf) build_arm "$target" ;;
    *) echo "usage: $0 [host] [arm64] [armhf]" >&2; exit 2 ;;
  esac
done
ls -l "$OUT"
exit $status
