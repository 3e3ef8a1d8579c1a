"""Extension list and build options only; metadata lives in pyproject.toml.

JSEDGE_NO_EXTENSIONS=1 builds no extension at all: the package then runs on its
pure-Python twins (the same switch is read at run time by jsedge/_ext.py).
"""

import os

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("JSEDGE_NO_EXTENSIONS", "") not in ("", "0")

SPEEDUPS = ["sublist", "parser", "codec"]


def extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    exts = [
        Extension(f"jsedge._speedups.{name}", [f"jsedge/_speedups/{name}.pyx"], extra_compile_args=["-O2"])
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

setup(ext_modules=extensions(), data_files=[("share/jsedge/systemd", SYSTEMD_FILES)])
