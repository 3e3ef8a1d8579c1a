"""The shipped systemd files: `systemd-analyze verify` silent, security exposure recorded and bounded,
and `jsedge service install` output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")


def _unit_with_existing_exec(tmp_path: Path, text: str) -> Path:
    # verify fails when ExecStart's binary is missing on this host: point it at this Python.
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", text, flags=re.M)
    unit = tmp_path / "jsedge.service"
    unit.write_text(text)
    return unit


@needs_analyze
def test_unit_verifies_without_any_complaint(tmp_path: Path) -> None:
    unit = _unit_with_existing_exec(tmp_path, (REPO_ROOT / "systemd" / "jsedge.service").read_text())
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=30)
    # systemd 252 exits 0 for unknown keys and bad values: any output at all is a failure.
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


@needs_analyze
def test_unit_security_exposure_is_low(tmp_path: Path) -> None:
    unit = _unit_with_existing_exec(tmp_path, (REPO_ROOT / "systemd" / "jsedge.service").read_text())
    done = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=30)
    match = re.search(r"Overall exposure level for jsedge.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    # Recorded in the README: 1.3 OK with systemd 252.
    assert float(match.group(1)) <= 2.0


def test_unit_has_the_required_keys() -> None:
    text = (REPO_ROOT / "systemd" / "jsedge.service").read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGUSR2",
        "Restart=on-failure",
        "LimitNOFILE=",
        "StateDirectory=jsedge",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=",
        "SystemCallFilter=",
        "MemoryDenyWriteExecute=yes",
    ):
        assert key in text, key
    stop = int(re.search(r"TimeoutStopSec=(\d+)", text).group(1))
    conf = (REPO_ROOT / "systemd" / "jsedge.conf").read_text()
    lame_duck = int(re.search(r'lame_duck_duration: "(\d+)s"', conf).group(1))
    assert stop > lame_duck


def test_example_config_is_valid() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "jsedge", "-t", "-c", str(REPO_ROOT / "systemd" / "jsedge.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr


def test_service_install_writes_unit_for_this_environment(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "jsedge", "service", "install", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    unit = (tmp_path / "etc/systemd/system/jsedge.service").read_text()
    exec_line = re.search(r"^ExecStart=(.*)$", unit, flags=re.M).group(1)
    assert exec_line.endswith("-c /etc/jsedge/jsedge.conf")
    assert exec_line.split()[0] in (sys.executable, str(Path(sys.executable).with_name("jsedge")))
    assert (tmp_path / "etc/sysusers.d/jsedge.conf").read_text().startswith("#")
    assert (tmp_path / "etc/tmpfiles.d/jsedge.conf").exists()
    assert (tmp_path / "etc/jsedge/jsedge.conf").exists()
    if ANALYZE is not None:
        verify = subprocess.run(
            [ANALYZE, "verify", str(tmp_path / "etc/systemd/system/jsedge.service")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert verify.stdout == "" and verify.stderr == "", verify.stdout + verify.stderr


def test_service_install_warns_when_the_program_is_hidden_from_the_service() -> None:
    """The hardened unit hides /home, /root and /tmp (ProtectHome, PrivateTmp): a jsedge installed
    there would not start, and `service install` says so and what to do."""
    from jsedge.service import hidden_location

    assert hidden_location("/home/pi/.venv/bin/jsedge -c /etc/jsedge/jsedge.conf") == "/home"
    assert hidden_location("/root/.pyenv/versions/3.11.7/bin/python3 -m jsedge -c x") == "/root"
    assert hidden_location("/tmp/venv/bin/jsedge -c x") == "/tmp"
    assert hidden_location("/opt/jsedge/bin/jsedge -c x") is None
    assert hidden_location("/usr/bin/python3 -m jsedge -c x") is None
    assert hidden_location("/homework/bin/jsedge -c x") is None
