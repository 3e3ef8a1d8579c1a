"""mypy as a ratchet (ARCHITECTURE.md §10): the error count may only go down.

    python tools/mypy_ratchet.py            # run mypy over jsedge, compare with the baseline
    python tools/mypy_ratchet.py --update   # write the current count as the new baseline

mypy runs with the configuration of pyproject.toml (`[tool.mypy]`: strict, over `jsedge`). The
number of errors is compared with the one committed in tools/mypy_baseline.txt:

* more errors than the baseline: exit 1, with every error and a per-file count, so the new ones are
  easy to find (fix them; never raise the baseline to make room for new code);
* fewer: exit 0 with a hint to lower the baseline (`--update`), so the improvement is locked in;
* the same: exit 0.

The baseline file holds the count on its first line that is not a `#` comment, and the mypy
version it was taken with: another mypy version may find more or fewer errors in the same code,
which is reported as a warning so that a count that moved for that reason is not mistaken for a
regression or an improvement.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "mypy_baseline.txt"

# `path:line: error: text  [code]` (a column after the line when show_column_numbers is set); a
# file-level error has no line. Notes (`: note:`) are not counted.
_ERROR = re.compile(r"^(?P<path>[^\s:][^:]*?):(?:\d+:){0,2} error: ")


def error_lines(output: str) -> list[str]:
    """The error lines of mypy's output (without notes and the summary line)."""
    return [line for line in output.splitlines() if _ERROR.match(line)]


def per_file(errors: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in errors:
        match = _ERROR.match(line)
        if match is not None:
            counts[match.group("path")] += 1
    return counts


def read_baseline(text: str) -> tuple[int, str]:
    """(count, mypy version or "") from the baseline file's text."""
    version = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            found = re.search(r"taken with mypy (\S+)", line)
            if found is not None and not version:
                version = found.group(1)
            continue
        if line:
            return int(line), version
    raise ValueError("no error count in the baseline file")


def format_baseline(count: int, version: str) -> str:
    return (
        "# mypy errors over jsedge with pyproject.toml's [tool.mypy]; checked by tools/mypy_ratchet.py\n"
        "# (may only go down: lower it with `python tools/mypy_ratchet.py --update` after fixing errors).\n"
        f"# taken with mypy {version}\n"
        f"{count}\n"
    )


def compare(count: int, baseline: int) -> tuple[int, str]:
    """(exit status, message) for `count` errors against the committed `baseline`."""
    if count > baseline:
        return 1, (
            f"mypy ratchet: {count} errors, baseline {baseline}: {count - baseline} new. Fix them "
            "(listed above); the baseline is never raised to make room for new code."
        )
    if count < baseline:
        return 0, (
            f"mypy ratchet: {count} errors, baseline {baseline}: {baseline - count} fewer, thank you. Lock it "
            "in: `python tools/mypy_ratchet.py --update` (writes tools/mypy_baseline.txt) and commit it."
        )
    return 0, f"mypy ratchet: {count} errors, as the baseline."


def run_mypy() -> tuple[int, str]:
    """(mypy's exit status, its stdout) for the configured files, run from the repository root."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-color-output", "--no-pretty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def mypy_version() -> str:
    from mypy.version import __version__

    return str(__version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--update", action="store_true", help="write the current count as the baseline")
    args = parser.parse_args(argv)

    status, output = run_mypy()
    errors = error_lines(output)
    if status not in (0, 1) or (status == 1 and not errors):
        # 2 = mypy could not run (bad config, crash): a count of 0 would be a lie
        print(output, end="")
        print(f"mypy ratchet: mypy failed to run (exit {status})", file=sys.stderr)
        return 2
    count = len(errors)
    version = mypy_version()

    if args.update:
        BASELINE.write_text(format_baseline(count, version))
        print(f"mypy ratchet: baseline set to {count} (mypy {version})")
        return 0

    baseline, baseline_version = read_baseline(BASELINE.read_text())
    if baseline_version and baseline_version != version:
        print(
            f"mypy ratchet: warning: the baseline was taken with mypy {baseline_version}, this is mypy "
            f"{version}; a different count may come from the version, not the code",
            file=sys.stderr,
        )
    result, message = compare(count, baseline)
    if result != 0:
        print("\n".join(errors))
        print("\nerrors per file:")
        for path, number in sorted(per_file(errors).items()):
            print(f"  {number:4d}  {path}")
    print(message)
    return result


if __name__ == "__main__":
    sys.exit(main())
