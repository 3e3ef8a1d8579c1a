#!/usr/bin/env bash
# jsedge under real systemd as PID 1 (slow tier): boots a Debian bookworm amd64 tree with
# `systemd-nspawn --boot` and checks the installed jsedge.service end to end.
#
#   sudo tools/test-systemd.sh            # exit 0 when every check passes
#
# What it does:
#  1. host: installs systemd-container, debootstrap, zstd when missing (one `apt-get update` first).
#  2. tree: debootstrap --variant=minbase bookworm amd64 with systemd, systemd-sysv, dbus, procps
#     (/bin/kill for ExecReload), python3(-venv,-pip,-dev), gcc, ca-certificates; kept as a tarball,
#     so later runs skip debootstrap. JSEDGE_SYSTEMD_FRESH=1 re-extracts the tree from the tarball.
#  3. jsedge: the COMMITTED sources (`git archive HEAD`) go to /opt/jsedge-src in the tree, a venv at
#     /opt/jsedge/venv gets a wheel built from them WITH the compiled twins (JSEDGE_SYSTEMD_PURE=1:
#     JSEDGE_NO_EXTENSIONS=1, pure Python), then the real `jsedge service install` (root /) writes the
#     unit, sysusers/tmpfiles snippets and /etc/jsedge/jsedge.conf (lame_duck_duration 30s, grace 5s,
#     unit TimeoutStopSec=45), and `systemctl enable jsedge`. A test-only drop-in sets WatchdogSec=3
#     and JSEDGE_TEST_HOOKS=1; PID 1 logs at debug level (to see the sd_notify messages).
#  4. boots the tree (systemd-nspawn --boot --register=no --keep-unit --private-network) and checks,
#     each wait bounded: ready, connect, reload, restart-on-crash, watchdog, clean-stop (lame duck),
#     security; prints a summary table and timings; powers the container off.
#
# Work dir: $JSEDGE_SYSTEMD_DIR (default /var/tmp/jsedge-systemd), never inside the repository. The
# chroot mounts (proc, dev) exist only while installing and are unmounted by a trap; they are never
# present when the tree is archived or booted. Root is required.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && git rev-parse --show-toplevel)
W=${JSEDGE_SYSTEMD_DIR:-/var/tmp/jsedge-systemd}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PKGS=systemd,systemd-sysv,dbus,procps,python3,python3-venv,python3-pip,python3-dev,gcc,libc6-dev,ca-certificates
T=$W/tree
CACHE=$W/bookworm-amd64-systemd.tar.zst
T0=$(date +%s.%N)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo "=== [$(since "$T0")s] $*"; }
die() { echo "test-systemd: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, systemd-nspawn)"
[ "$(uname -m)" = x86_64 ] || die "amd64 host only (see PLATFORMS.md B4 for arm64 under qemu)"
mkdir -p "$W"
W=$(cd "$W" && pwd -P)
case "$W/" in "$(cd "$REPO" && pwd -P)/"*) die "work dir $W is inside the repository $REPO: refusing" ;; esac
T=$W/tree
CACHE=$W/bookworm-amd64-systemd.tar.zst

declare -A TIMING=()
NAMES=() RESULTS=() DETAILS=()
NSPAWN= L=

unmount_tree() {
  local m
  for m in dev/pts dev proc sys; do
    while mountpoint -q "$T/$m" 2>/dev/null; do umount "$T/$m" 2>/dev/null || umount -l "$T/$m" || break; done
  done
}
cleanup() {
  if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
    [ -n "$L" ] && timeout 10 nsenter -t "$L" -a systemctl --no-block poweroff 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
    kill -TERM "$NSPAWN" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$NSPAWN" 2>/dev/null || true
  fi
  unmount_tree
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------- host
step "host tools"
t=$(now)
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v zstd >/dev/null || need+=(zstd)
command -v nsenter >/dev/null || need+=(util-linux)
command -v pgrep >/dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
TIMING[host-tools]=$(since "$t")

# ---------------------------------------------------------------------------------------------- tree
unmount_tree
if [ "${JSEDGE_SYSTEMD_FRESH:-0}" = 1 ] && [ -f "$CACHE" ]; then rm -rf "$T"; fi
t=$(now)
if ! [ -f "$T/.jsedge-base-ok" ]; then
  rm -rf "$T" "$T.tmp"
  if [ -f "$CACHE" ]; then
    step "restoring the cached tree from $CACHE"
    mkdir -p "$T.tmp" && tar -C "$T.tmp" --zstd -xf "$CACHE"
  else
    step "debootstrap bookworm amd64 minbase (a few minutes)"
    debootstrap --arch=amd64 --variant=minbase --include=$PKGS bookworm "$T.tmp" "$MIRROR" >"$W/debootstrap.log" 2>&1 \
      || { tail -30 "$W/debootstrap.log"; for m in proc sys dev/pts dev; do mountpoint -q "$T.tmp/$m" && umount -l "$T.tmp/$m"; done; die "debootstrap failed"; }
    # debootstrap may leave mounts behind: never archive a live /proc or /dev.
    for m in dev/pts dev proc sys; do while mountpoint -q "$T.tmp/$m"; do umount "$T.tmp/$m"; done; done
    rm -rf "$T.tmp/var/cache/apt/archives/"*.deb
    step "archiving the base tree to $CACHE"
    tar -C "$T.tmp" --zstd --one-file-system --exclude=./proc/* --exclude=./sys/* --exclude=./dev/pts/* -cf "$CACHE.tmp" .
    mv "$CACHE.tmp" "$CACHE"
  fi
  touch "$T.tmp/.jsedge-base-ok"
  mv "$T.tmp" "$T"
fi
TIMING[tree]=$(since "$t")

# ------------------------------------------------------------------------------------ install jsedge
step "installing the committed jsedge ($(git -C "$REPO" rev-parse --short HEAD)) into the tree"
t=$(now)
cp /etc/resolv.conf "$T/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$T/etc/ssl/certs/ca-certificates.crt"
rm -rf "$T/opt/jsedge-src" "$T/opt/jsedge-wheel" && mkdir -p "$T/opt/jsedge-src" "$T/opt/jsedge-wheel"
git -C "$REPO" archive --format=tar HEAD | tar -x -C "$T/opt/jsedge-src"
mount -t proc proc "$T/proc"
mount --bind /dev "$T/dev"
PURE=${JSEDGE_SYSTEMD_PURE:-0}
inchroot() { chroot "$T" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
inchroot bash -euc "
  [ -x /opt/jsedge/venv/bin/python ] || python3 -m venv /opt/jsedge/venv
  export PIP_DISABLE_PIP_VERSION_CHECK=1 $( [ "$PURE" = 1 ] && echo JSEDGE_NO_EXTENSIONS=1 )
  /opt/jsedge/venv/bin/pip wheel -q --no-deps -w /opt/jsedge-wheel /opt/jsedge-src
  whl=\$(ls /opt/jsedge-wheel/jsedge-*.whl)
  /opt/jsedge/venv/bin/pip install -q --force-reinstall --no-deps \"\$whl\"
  /opt/jsedge/venv/bin/pip install -q \"\$whl\"
  /opt/jsedge/venv/bin/jsedge service install --force
  systemctl enable jsedge.service
"
unmount_tree
rm -rf "$T/etc/systemd/system/jsedge.service.d"
mkdir -p "$T/etc/systemd/system/jsedge.service.d" "$T/etc/systemd/system.conf.d" "$T/opt/jsedge-test"
{
  echo "# test-systemd.sh only: a short watchdog and the \$JSEDGE.TEST.block hook"
  echo "[Service]"
  echo "WatchdogSec=3"
  echo "Environment=JSEDGE_TEST_HOOKS=1"
  [ "$PURE" = 1 ] && echo "Environment=JSEDGE_NO_EXTENSIONS=1"
  # negative controls, e.g. JSEDGE_SYSTEMD_DROPIN_EXTRA='Restart=no' must make the script fail
  [ -n "${JSEDGE_SYSTEMD_DROPIN_EXTRA:-}" ] && printf '%s\n' "$JSEDGE_SYSTEMD_DROPIN_EXTRA"
  true
} >"$T/etc/systemd/system/jsedge.service.d/90-test.conf"
# PID 1 at debug level: the journal then shows each sd_notify message and each unit state change.
printf '[Manager]\nLogLevel=debug\n' >"$T/etc/systemd/system.conf.d/90-jsedge-test.conf"
rm -rf "$T/var/lib/jsedge" "$T/var/lib/private/jsedge"   # state (and any core file) of an earlier run

cat >"$T/opt/jsedge-test/client.py" <<'EOF'
"""Tiny raw NATS client. ping: INFO, CONNECT, PING -> PONG. pub SUBJ DATA: publish, no reply wait.
hold SECONDS: stay connected, report a lame-duck INFO ("ldm":true) and the server closing us."""
import json, socket, sys, time

def connect():
    s = socket.create_connection(("127.0.0.1", 4222), timeout=5)
    f = s.makefile("rb")
    line = f.readline()
    assert line.startswith(b"INFO "), line
    info = json.loads(line[5:])
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1,"name":"systemd-e2e"}\r\nPING\r\n')
    while True:
        line = f.readline()
        if line == b"PONG\r\n":
            return s, f, info
        assert line, "closed before PONG"

mode = sys.argv[1]
if mode == "ping":
    s, f, info = connect()
    print(f"PONG from {info.get('server_name')} version={info.get('version')} server_id={info.get('server_id')}")
elif mode == "pub":
    s, f, info = connect()
    data = sys.argv[3].encode()
    s.sendall(b"PUB %s %d\r\n%s\r\n" % (sys.argv[2].encode(), len(data), data))
    time.sleep(0.3)
elif mode == "hold":
    s, f, info = connect()
    print("connected", flush=True)
    s.settimeout(float(sys.argv[2]))
    start, ldm, eof = time.monotonic(), False, False
    try:
        while True:
            line = f.readline()
            if not line:
                eof = True
                break
            if line.startswith(b"INFO ") and json.loads(line[5:]).get("ldm"):
                ldm = True
                print(f"ldm INFO after {time.monotonic() - start:.1f}s", flush=True)
            elif line == b"PING\r\n":
                s.sendall(b"PONG\r\n")
    except (socket.timeout, OSError) as exc:
        print(f"error: {exc!r}")
    print(f"ldm={ldm} eof={eof} after={time.monotonic() - start:.1f}s", flush=True)
EOF
TIMING[install]=$(since "$t")

# ----------------------------------------------------------------------------------------- boot + e2e
set +e
step "booting the tree: systemd-nspawn --boot"
t=$(now)
systemd-nspawn -D "$T" --boot --register=no --keep-unit --private-network --console=pipe \
  </dev/null >"$W/boot.log" 2>&1 &
NSPAWN=$!
for _ in $(seq 1 120); do L=$(pgrep -P "$NSPAWN" -f 'lib/systemd/systemd' | head -1); [ -n "$L" ] && break; kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
if [ -z "$L" ]; then
  echo "FAIL: the container did not start:"; cat "$W/boot.log"; exit 1
fi
C() { timeout "${TMO:-30}" nsenter -t "$L" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
for _ in $(seq 1 240); do C test -S /run/systemd/private 2>/dev/null && break; sleep 0.5; done
SYSTEM=$(TMO=300 C systemctl is-system-running --wait)
TIMING[boot]=$(since "$t")
echo "system: $SYSTEM ($(C systemctl --version | head -1))"

show() { C systemctl show jsedge -P "$1"; }
journal() { C journalctl -b -u jsedge -o short-monotonic --no-pager; }
# not `grep -q`: under pipefail, journalctl killed by SIGPIPE would fail the pipeline
jhas() { journal | grep -E -- "$1" >/dev/null; }
record() {  # name PASS|FAIL detail
  NAMES+=("$1") RESULTS+=("$2") DETAILS+=("$3")
  echo "$2 $1: $3"
}
check() {  # name detail condition...
  local name=$1 detail=$2; shift 2
  if eval "$*"; then record "$name" PASS "$detail"; else record "$name" FAIL "$detail"; FAIL=1; fi
}
wait_until() {  # seconds condition: poll every 0.2 s
  local deadline=$(( $(date +%s) + $1 )); shift
  while ! eval "$*"; do [ "$(date +%s)" -ge "$deadline" ] && return 1; sleep 0.2; done
}
# 1-based line of the first journal line matching an ERE after line $2 (0 when none)
line_of() { journal | awk -v re="$1" -v after="${2:-0}" 'NR > after && $0 ~ re { print NR; found = 1; exit } END { if (!found) print 0 }'; }
FAIL=0

# (1) ready: active (running) only after READY=1, StatusText from STATUS=, a client gets PONG.
wait_until 60 '[ "$(show ActiveState)" = active ]'
started=$(show ExecMainStartTimestampMonotonic) entered=$(show ActiveEnterTimestampMonotonic)
TIMING[jsedge-start-to-ready]=$(awk -v a="$started" -v b="$entered" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
n_ready=$(line_of 'Got notification message from PID [0-9]+ \(READY=1') n_running=$(line_of 'Changed start -> running')
n_served=$(line_of 'Server is ready')
state="$(show ActiveState)/$(show SubState) status='$(show StatusText)' pid=$(show MainPID)"
check ready "$state; journal lines: 'Server is ready' $n_served, READY=1 $n_ready, start->running $n_running" \
  '[ "$state" != "" ] && [ "$(show SubState)" = running ] && [[ "$(show StatusText)" =~ ^serving\ [0-9]+\ clients$ ]] \
   && [ "$n_ready" -gt 0 ] && [ "$n_running" -gt "$n_ready" ] && [ "$n_served" -gt 0 ]'
pong=$(C /usr/bin/python3 /opt/jsedge-test/client.py ping 2>&1)
check connect "$pong" '[[ "$pong" == PONG* ]]'
echo "twins: $(C /opt/jsedge/venv/bin/python -c 'import jsedge.routing.sublist, jsedge.protocol.parser, jsedge.store.codec, jsedge._ext as e; print(e.LOADED)' 2>&1)"

# (2) reload: ExecReload (kill -HUP) keeps it active, RELOADING=1 then READY=1, config re-read.
pid=$(show MainPID) t=$(now)
C systemctl reload jsedge; rc=$?
TIMING[reload]=$(since "$t")
wait_until 10 '[ "$(line_of "Reloaded server configuration")" -gt 0 ]'
n_rl=$(line_of 'RELOADING=1') n_rd=$(line_of 'Got notification message from PID [0-9]+ \(READY=1' "$n_rl")
check reload "rc=$rc $(show ActiveState)/$(show SubState) same pid=$([ "$(show MainPID)" = "$pid" ] && echo yes || echo no); RELOADING=1 line $n_rl, READY=1 after it line $n_rd; '$(journal | grep -o 'Reloaded server configuration.*' | tail -1)'" \
  '[ $rc = 0 ] && [ "$(show ActiveState)" = active ] && [ "$(show MainPID)" = "$pid" ] && [ "$(line_of "Reloaded server configuration")" -gt 0 ] && [ "$n_rl" -gt 0 ] && [ "$n_rd" -gt 0 ]'

# (3) restart after a crash: SIGSEGV to the main PID -> Restart=on-failure (RestartSec=1).
before=$(show MainPID) n0=$(show NRestarts) t=$(now)
C kill -SEGV "$before"
wait_until 30 '[ "$(show NRestarts)" -gt "$n0" ] && [ "$(show ActiveState)" = active ] && [ "$(show SubState)" = running ]'
TIMING[crash-to-active]=$(since "$t")
after=$(show MainPID)
check restart-on-crash "MainPID $before -> $after, NRestarts $n0 -> $(show NRestarts); $(journal | grep -o 'Main process exited, code=[a-z]*, status=[^ ]*' | tail -1)" \
  '[ "$(show NRestarts)" -gt "$n0" ] && [ "$after" != "$before" ] && [ "$after" != 0 ] && [ "$(show ActiveState)" = active ] \
   && jhas "status=11/SEGV"'
pong=$(C /usr/bin/python3 /opt/jsedge-test/client.py ping 2>&1)
check connect-after-crash "$pong" '[[ "$pong" == PONG* ]]'

# (4) watchdog: block the event loop 20 s -> no WATCHDOG=1 -> SIGABRT after WatchdogSec=3 -> restart.
before=$(show MainPID) n0=$(show NRestarts) t=$(now)
C /usr/bin/python3 /opt/jsedge-test/client.py pub '$JSEDGE.TEST.block' 20
wait_until 40 '[ "$(show NRestarts)" -gt "$n0" ] && [ "$(show ActiveState)" = active ] && [ "$(show SubState)" = running ]'
TIMING[block-to-active]=$(since "$t")
after=$(show MainPID)
check watchdog "WatchdogUSec=$(show WatchdogUSec) MainPID $before -> $after, NRestarts $n0 -> $(show NRestarts); $(journal | grep -o 'Watchdog timeout.*' | tail -1); $(journal | grep -o "Failed with result 'watchdog'" | tail -1)" \
  '[ "$(show NRestarts)" -gt "$n0" ] && [ "$after" != "$before" ] && [ "$(show ActiveState)" = active ] \
   && jhas "Failed with result .watchdog." && jhas "Killing process $before .* with signal SIGABRT"'

# (5) clean stop: KillSignal=SIGUSR2 -> STOPPING=1, lame duck closes the client, exit 0 in time.
C /usr/bin/python3 /opt/jsedge-test/client.py hold 60 >"$W/hold.out" 2>&1 &
HOLD=$!
wait_until 10 'grep -q connected "$W/hold.out"'
wait_until 8 '[ "$(show StatusText)" = "serving 1 clients" ]'
status1=$(show StatusText)
t=$(now)
TMO=120 C systemctl stop jsedge; rc=$?
TIMING[stop]=$(since "$t")
for _ in $(seq 1 50); do kill -0 "$HOLD" 2>/dev/null || break; sleep 0.2; done
kill "$HOLD" 2>/dev/null; wait "$HOLD" 2>/dev/null
hold=$(tr '\n' ' ' <"$W/hold.out")
tss=$(show TimeoutStopUSec)
tss_us=$(C systemd-analyze timespan "$tss" | awk '/μs:/ { print $2 }')
check clean-stop "rc=$rc $(show ActiveState) Result=$(show Result) ExecMainCode=$(show ExecMainCode) ExecMainStatus=$(show ExecMainStatus) in ${TIMING[stop]}s (TimeoutStopSec=$tss); status before: '$status1'; client: $hold" \
  '[ $rc = 0 ] && [ "$(show ActiveState)" = inactive ] && [ "$(show Result)" = success ] && [ "$(show ExecMainCode)" = 1 ] \
   && [ "$(show ExecMainStatus)" = 0 ] && jhas "STOPPING=1" && jhas "Entering lame duck mode" \
   && [[ "$hold" == *"ldm=True eof=True"* ]] \
   && awk -v s="${TIMING[stop]}" -v l="$tss_us" "BEGIN { exit !(l > 0 && s * 1e6 < l) }" && [ "$status1" = "serving 1 clients" ]'

# (6) security exposure of the installed unit, online, inside the booted system.
SEC=$(C systemd-analyze security jsedge 2>&1 | grep -o 'Overall exposure level for jsedge.service: .*')
check security "$SEC" '[ -n "$SEC" ]'

echo "--- journal (jsedge, info and above, last 40 lines)"
C journalctl -b -u jsedge -p info -o short-monotonic --no-pager | grep -v ' systemd\[1\]: jsedge.service: \(Got\|Changed\|Trying\|Passing\|Child\|Control\|Will\|About\|Running\|Forked\|Installed\|Sent\|Watchdog ping\)' | tail -40
C journalctl -b -u jsedge -o short-monotonic --no-pager >"$W/journal-jsedge.log" 2>&1

step "powering off"
t=$(now)
C systemctl --no-block poweroff
for _ in $(seq 1 120); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
wait "$NSPAWN" 2>/dev/null
TIMING[poweroff]=$(since "$t")
NSPAWN=
TIMING[total]=$(since "$T0")

echo
echo "=== summary ($([ "$PURE" = 1 ] && echo pure Python || echo compiled twins), $SYSTEM)"
printf '%-20s %-5s %s\n' CHECK RESULT DETAIL
for i in "${!NAMES[@]}"; do printf '%-20s %-5s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${DETAILS[$i]}"; done
echo
echo "=== timings (seconds)"
for k in host-tools tree install boot jsedge-start-to-ready reload crash-to-active block-to-active stop poweroff total; do
  printf '%-22s %s\n' "$k" "${TIMING[$k]:-}"
done
echo "logs: $W/boot.log $W/journal-jsedge.log"
[ ${#NAMES[@]} -ge 8 ] || FAIL=1
exit $FAIL
