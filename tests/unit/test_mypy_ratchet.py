"""tools/mypy_ratchet.py: counting mypy's errors and comparing them with the committed baseline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "tools" / "mypy_ratchet.py"
_spec = importlib.util.spec_from_file_location("mypy_ratchet", _PATH)
assert _spec is not None and _spec.loader is not None
ratchet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ratchet)

OUTPUT = """\
jsedge/a.py:3: error: Incompatible types in assignment  [assignment]
jsedge/a.py:3: note: See https://mypy.readthedocs.io/
jsedge/b/c.py:10:5: error: Missing type arguments  [type-arg]
jsedge/d.pyi: error: Duplicate module named "d"  [misc]
Found 3 errors in 3 files (checked 71 source files)
"""


def test_counts_errors_not_notes_or_the_summary():
    errors = ratchet.error_lines(OUTPUT)
    assert len(errors) == 3
    assert dict(ratchet.per_file(errors)) == {"jsedge/a.py": 1, "jsedge/b/c.py": 1, "jsedge/d.pyi": 1}
    assert ratchet.error_lines("Success: no issues found in 71 source files\n") == []


def test_baseline_round_trip():
    assert ratchet.read_baseline(ratchet.format_baseline(127, "1.11.2")) == (127, "1.11.2")
    assert ratchet.read_baseline("# a comment\n\n42\n") == (42, "")


def test_compare_fails_only_when_the_count_rises():
    assert ratchet.compare(10, 10)[0] == 0
    status, message = ratchet.compare(11, 10)
    assert status == 1 and "1 new" in message
    status, message = ratchet.compare(8, 10)
    assert status == 0 and "--update" in message
