"""Installing on a machine without a C compiler (issue 18): the build does not fail; it leaves the
compiled twins out with one warning, and jsedge then runs on its pure-Python twins and says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0"), reason="a build test: the compiled pass runs it"
    ),
]


def test_build_without_a_compiler_installs_the_pure_python_twins(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=30
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO_ROOT / name.decode()
        if source.is_file() and not name.startswith((b"tests/", b"benchmarks/")):
            target = tree / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    env = dict(os.environ, CC="false", CXX="false", PYTHONDONTWRITEBYTECODE="1")
    env.pop("JSEDGE_NO_EXTENSIONS", None)
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    assert build.returncode == 0, build.stderr
    warnings = [line for line in build.stderr.splitlines() if line.startswith("WARNING: jsedge")]
    assert len(warnings) == 1 and "pure-Python build" in warnings[0], build.stderr
    assert not list((tree / "jsedge" / "_speedups").glob("*.so"))
    twins = subprocess.run(
        [sys.executable, "-c", "from jsedge import _ext; import jsedge.routing.sublist; print(_ext.describe())"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "PYTHONPATH": str(tree)},
    )
    assert twins.returncode == 0 and "sublist=py" in twins.stdout, twins.stdout + twins.stderr
