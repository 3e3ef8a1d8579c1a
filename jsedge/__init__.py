"""jsedge: a NATS server written in Python with compiled hot paths."""

__version__ = "0.1.0"

#: The nats-server version whose behaviour jsedge reproduces; clients gate features on it.
NATS_COMPAT_VERSION = "2.15.1"


def __getattr__(name: str) -> object:
    """`jsedge.serve` and `jsedge.run_in_thread` (jsedge.embed), imported on first use so that
    `import jsedge` stays cheap for the command line."""
    if name in ("serve", "run_in_thread", "EmbeddedServer", "ThreadedServer"):
        from jsedge import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'jsedge' has no attribute {name!r}")
