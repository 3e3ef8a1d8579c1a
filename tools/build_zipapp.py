"""Build jsedge as one file: a zipapp (shiv) that runs with the system Python 3.11+ and needs nothing
else installed, the compiled twins inside (for the machine it is built on).

    python tools/build_zipapp.py                     # dist/jsedge-<version>-py311-<arch>.pyz
    python tools/build_zipapp.py --from-env -o x.pyz # the dependencies as installed here (offline)

Copy the file to the box and run it: `python3 jsedge-0.1.0-py311-aarch64.pyz -js -sd /var/lib/jsedge`
(or make it executable: `./jsedge-….pyz`). shiv unpacks it once into `~/.shiv` (or `$SHIV_ROOT`),
since compiled extensions cannot be imported from inside a zip. Build it on (or under emulation of,
see tools/test-arm.sh) the architecture it is for: the compiled twins and the dependencies' own
extensions (uvloop, bcrypt, PyNaCl, cramjam) are that architecture's.

How: jsedge's package directory is copied as it is in this tree (build the twins first with
`python setup.py build_ext --inplace`; without them the zipapp runs the pure-Python twins), the
runtime dependencies are installed next to it with `pip install --target` (or, with `--from-env`,
copied from this environment's installed distributions), and shiv packs the lot with
`jsedge.__main__:main` as the entry point.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what is not copied from the package directory (build products of Cython's C step, caches)
_SKIP = {"__pycache__", ".mypy_cache"}
_SKIP_SUFFIXES = (".c", ".pyc", ".html")


def runtime_requirements() -> list[str]:
    """jsedge's `dependencies` from pyproject.toml whose markers apply here."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = []
    for text in project["dependencies"]:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate():
            wanted.append(text)
    return wanted


def copy_package(site: Path) -> bool:
    """jsedge's package into `site`; True when the compiled twins went with it."""
    target = site / "jsedge"

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in _SKIP or n.endswith(_SKIP_SUFFIXES)}

    shutil.copytree(ROOT / "jsedge", target, ignore=ignore)
    return any((target / "_speedups").glob("*.so")) or any((target / "_speedups").glob("*.pyd"))


def _distribution_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def copy_from_env(site: Path, requirements: list[str]) -> None:
    """The requirements and what they require, copied from this environment's installation."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_distribution_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file)))
            if not source.is_file() or "__pycache__" in file.parts or file.parts[0] == "..":
                continue
            destination = site / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)


def build(output: Path, from_env: bool) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jsedge-zipapp-") as work:
        site = Path(work) / "site-packages"
        site.mkdir()
        compiled = copy_package(site)
        requirements = runtime_requirements()
        if from_env:
            copy_from_env(site, requirements)
        else:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), *requirements], check=True
            )
        shiv = shutil.which("shiv")
        command = [shiv] if shiv else [sys.executable, "-m", "shiv"]
        command += ["--site-packages", str(site), "-e", "jsedge.__main__:main", "-o", str(output)]
        command += ["-p", "/usr/bin/env python3", "--reproducible", "--compressed"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    if not compiled:
        print("warning: no compiled twins in jsedge/_speedups: the zipapp runs pure Python", file=sys.stderr)
    return output


def default_output() -> Path:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return ROOT / "dist" / f"jsedge-{version}-{python}-{platform.machine()}.pyz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, default=None, help="where to write the .pyz")
    parser.add_argument("--from-env", action="store_true", help="copy the dependencies from this environment")
    args = parser.parse_args(argv)
    output = build(args.output or default_output(), args.from_env)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
