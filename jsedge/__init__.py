"""jsedge: a NATS server written in Python with compiled hot paths."""

__version__ = "0.1.0"

#: The nats-server version whose behaviour jsedge reproduces; clients gate features on it.
NATS_COMPAT_VERSION = "2.15.1"
