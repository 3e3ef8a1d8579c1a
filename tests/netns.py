"""Isolated "hosts" for multi-host cluster tests: Linux network namespaces on one bridge
(../shared/PLATFORMS.md §C1).

`NetHosts(names)` makes one namespace per host name, each with an `eth0` on a bridge that lives in
its own hub namespace, an address 10.<n>.0.<i>/24 and an /etc/hosts that maps every host name (the
seed article's `nats-route://nats-1:6222` resolves inside the namespaces). The test process joins
the bridge too (a veth in the root namespace, address .254), so it reaches every host by address.
`partition(name)` / `heal(name)` take a host's link down and up. Everything is removed by
`cleanup()` (also at interpreter exit). Needs root and iproute2; `NetHosts.skip_unless_available()`
skips the calling test otherwise.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from pathlib import Path

_LIVE: list[NetHosts] = []


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _subnet_in_use(octet: int) -> bool:
    out = _ip("-4", "-o", "addr", "show", check=False).stdout
    return f" 10.{octet}.0." in out


class NetHosts:
    """Hosts in network namespaces on one bridge, reachable from the test process."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        tag = f"je{os.getpid() % 100000}x{len(_LIVE)}"
        self.tag = tag
        self.hub = f"{tag}-hub"
        self.namespaces = {name: f"{tag}-{i + 1}" for i, name in enumerate(self.names)}
        octet = 100 + os.getpid() % 100
        while _subnet_in_use(octet):
            octet = 100 + (octet - 99) % 100
        self.addresses = {name: f"10.{octet}.0.{i + 1}" for i, name in enumerate(self.names)}
        self.gateway = f"10.{octet}.0.254"
        self._links: dict[str, str] = {}
        _LIVE.append(self)
        try:
            self._build()
        except BaseException:
            self.cleanup()
            raise

    @staticmethod
    def skip_unless_available() -> None:
        import pytest

        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.skip("network namespaces need root and iproute2")
        probe = f"je-probe-{os.getpid()}"
        if _ip("netns", "add", probe, check=False).returncode != 0:
            pytest.skip("cannot create network namespaces here")
        _ip("netns", "del", probe, check=False)

    def _build(self) -> None:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        hosts_lines = ["127.0.0.1 localhost"] + [f"{self.addresses[n]} {n}" for n in self.names]
        for index, name in enumerate(self.names):
            ns = self.namespaces[name]
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            link = f"h{index + 1}"
            _ip("-n", self.hub, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", link, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.addresses[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            self._links[name] = link
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("\n".join(hosts_lines) + "\n")
        # the test process's own leg on the bridge
        outside = f"{self.tag}-gw"
        _ip("link", "add", outside, "type", "veth", "peer", "name", "gw", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", "gw", "master", "br0", "up")
        _ip("addr", "add", f"{self.gateway}/24", "dev", outside)
        _ip("link", "set", outside, "up")
        self._outside = outside

    def netns(self, name: str) -> tuple[str, str]:
        """The (namespace, address) pair ServerProcess(netns=...) takes."""
        return self.namespaces[name], self.addresses[name]

    def partition(self, name: str) -> None:
        """Cut `name` off the bridge (its connections hang; nothing is refused)."""
        _ip("-n", self.hub, "link", "set", self._links[name], "down")

    def heal(self, name: str) -> None:
        _ip("-n", self.hub, "link", "set", self._links[name], "up")

    def cleanup(self) -> None:
        if getattr(self, "_outside", None):
            _ip("link", "del", self._outside, check=False)
            self._outside = ""
        for ns in [*self.namespaces.values(), self.hub]:
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> NetHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@atexit.register
def _cleanup_all() -> None:
    for hosts in list(_LIVE):
        hosts.cleanup()
