"""Extension list and build options only; metadata lives in pyproject.toml.

JSEDGE_NO_EXTENSIONS=1 builds no extension at all: the package then runs on its
pure-Python twins (the same switch is read at run time by jsedge/_ext.py).

Without a working C compiler the install does not fail: each twin that cannot be compiled is left
out with one warning, and jsedge runs that hot path in pure Python (it says so in its log when it
starts: "Compiled twin ... is missing").
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that turns a missing or failing C compiler into one warning."""

    def run(self):
        self.failed = []
        try:
            super().run()
        except Exception as exc:  # no compiler at all (DistutilsPlatformError), or copying what failed
            if not self.failed:
                self.failed.append(("the compiled twins", exc))
        if self.failed:
            names = ", ".join(name.rsplit(".", 1)[-1] for name, _ in self.failed)
            exc = self.failed[0][1]
            reason = (str(exc).splitlines() or [exc.__class__.__name__])[0][:160]
            print(
                f"WARNING: jsedge: could not compile its twins ({names}: {reason}); installing the "
                "pure-Python build, whose hot paths are slower. Install a C compiler and Python's "
                "headers (e.g. apt install build-essential python3-dev) and reinstall to get them.",
                file=sys.stderr,
            )

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # CCompilerError, DistutilsExecError, OSError...
            self.failed.append((ext.name, exc))


NO_EXTENSIONS = os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0")

SPEEDUPS = ["sublist", "parser", "codec", "commands", "ingest"]


def extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    # Linked without debug symbols on Linux (Python's own flags add -g): a third of the size, which
    # an SD card and a one-file build notice, and nothing a user's traceback needs.
    link = ["-s"] if sys.platform.startswith("linux") else []
    exts = [
        Extension(
            f"jsedge._speedups.{name}",
            [f"jsedge/_speedups/{name}.pyx"],
            extra_compile_args=["-O2"],
            extra_link_args=link,
        )
        for name in SPEEDUPS
    ]
    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        include_path=["."],
    )


SYSTEMD_FILES = [
    "systemd/jsedge.service",
    "systemd/jsedge.sysusers.conf",
    "systemd/jsedge.tmpfiles.conf",
    "systemd/jsedge.conf",
]

setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    data_files=[("share/jsedge/systemd", SYSTEMD_FILES)],
)
