"""A store written on x86-64 (tests/data/filestore-x86_64, by tools/store_fixture.py) opens and reads
back exactly on whatever architecture runs this test; tools/test-arm.sh runs it on ARM and also checks
the other direction (written under ARM emulation, verified on the host)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import store_fixture  # noqa: E402


@pytest.fixture
def x86_store(tmp_path: Path) -> Path:
    # Opening may truncate or rewrite (recovery, limits): work on a copy of the committed fixture.
    target = tmp_path / "store"
    shutil.copytree(REPO / "tests" / "data" / "filestore-x86_64", target)
    return target


def test_store_written_on_x86_64_reads_back_here(x86_store: Path) -> None:
    store_fixture.verify(x86_store)


async def test_fixture_writer_round_trips_on_this_architecture(tmp_path: Path) -> None:
    await store_fixture.write(tmp_path / "here")
    store_fixture.verify(tmp_path / "here")
