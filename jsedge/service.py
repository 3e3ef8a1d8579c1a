"""`jsedge service install`: put jsedge under systemd (layer 7).

Writes the unit (from `systemd/jsedge.service`, with `ExecStart` pointing at the Python environment
jsedge is installed in), the sysusers and tmpfiles snippets, and an example config when none exists;
then prints the systemctl commands to run. `--root DIR` writes below DIR (packaging, tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

_UNIT_DIR = "etc/systemd/system"
_SYSUSERS_DIR = "etc/sysusers.d"
_TMPFILES_DIR = "etc/tmpfiles.d"
_CONFIG_DIR = "etc/jsedge"


def _templates() -> Path:
    # A source checkout has them at the top; an installed package under <prefix>/share/jsedge/systemd
    # (setup.py's data_files).
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "systemd", Path(sys.prefix) / "share" / "jsedge" / "systemd"):
        if (candidate / "jsedge.service").exists():
            return candidate
    raise FileNotFoundError("systemd templates not found (systemd/ or <prefix>/share/jsedge/systemd)")


def exec_start(config_path: str) -> str:
    """The command systemd runs: the console script beside this interpreter, else `python -m jsedge`."""
    script = Path(sys.executable).with_name("jsedge")
    if script.exists() and os.access(script, os.X_OK):
        return f"{script} -c {config_path}"
    return f"{sys.executable} -m jsedge -c {config_path}"


def hidden_location(command: str) -> str | None:
    """The directory of the unit's program that the hardened unit hides from the service
    (`ProtectHome=yes`: /home, /root, /run/user; `PrivateTmp=yes`: /tmp, /var/tmp), if any."""
    program = command.split()[0]
    for directory in ("/home", "/root", "/run/user", "/tmp", "/var/tmp"):
        if program == directory or program.startswith(directory + "/"):
            return directory
    return None


def render_unit(config_path: str) -> str:
    text = (_templates() / "jsedge.service").read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={exec_start(config_path)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(root: str = "/", config_path: str = "/etc/jsedge/jsedge.conf", force: bool = False) -> list[Path]:
    base = Path(root)
    templates = _templates()
    written: list[Path] = []

    def put(relative_dir: str, name: str, content: str, overwrite: bool) -> None:
        target = base / relative_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not overwrite:
            return
        target.write_text(content)
        written.append(target)

    put(_UNIT_DIR, "jsedge.service", render_unit(config_path), True)
    put(_SYSUSERS_DIR, "jsedge.conf", (templates / "jsedge.sysusers.conf").read_text(), True)
    put(_TMPFILES_DIR, "jsedge.conf", (templates / "jsedge.tmpfiles.conf").read_text(), True)
    config_target = base / config_path.lstrip("/")
    put(str(config_target.parent.relative_to(base)), config_target.name, (templates / "jsedge.conf").read_text(), force)
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jsedge service", description="Install jsedge as a systemd service.")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="write the unit, sysusers/tmpfiles snippets and an example config")
    inst.add_argument("--root", default="/", help="write below this directory (default /)")
    inst.add_argument("--config", default="/etc/jsedge/jsedge.conf", help="config file the unit runs with")
    inst.add_argument("--force", action="store_true", help="overwrite an existing config file")
    args = parser.parse_args(argv)
    try:
        written = install(args.root, args.config, args.force)
    except OSError as exc:
        print(f"jsedge: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    hidden = hidden_location(exec_start(args.config))
    if hidden is not None:
        print(
            f"jsedge: warning: the service would run {exec_start(args.config).split()[0]}, which is under "
            f"{hidden}: the unit's ProtectHome=yes / PrivateTmp=yes hide that directory from the service, "
            "so it would fail to start. Install jsedge where the service can see it (e.g. "
            "`sudo python3 -m venv /opt/jsedge && sudo /opt/jsedge/bin/pip install jsedge`, then run "
            "`sudo /opt/jsedge/bin/jsedge service install`), or relax those settings in the unit.",
            file=sys.stderr,
        )
    if args.root == "/":
        print("\nNow run:")
        print("  systemd-sysusers jsedge.conf && systemd-tmpfiles --create jsedge.conf")
        print("  systemctl daemon-reload")
        print("  systemctl enable --now jsedge")
        print("  systemctl status jsedge        # Active: active (running), Status: serving N clients")
    if shutil.which("systemctl") is None:
        print("(systemctl not found on this machine)", file=sys.stderr)
    return 0
