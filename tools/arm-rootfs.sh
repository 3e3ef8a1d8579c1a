# Shared by tools/test-arm.sh and tools/build-wheels.sh (sourced, not run): a Debian bookworm root
# file system for $ARCH (arm64 or armhf) under qemu-user emulation at $R, with /proc and /dev
# mounted until the calling script exits, and `arm CMD...` to run a command in it. Needs ARCH and
# TOP set; defines W, R, step, arm. Root is needed (chroot, binfmt).
# Work dir: $JSEDGE_ARM_DIR (default /var/tmp/jsedge-platforms, deliberately OUTSIDE the repository:
# while a chroot has /proc and /dev mounted, a recursive copy of the tree would read them forever).
# The bootstrapped rootfs is kept as a tarball there, so later runs skip debootstrap (~5 min).
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
