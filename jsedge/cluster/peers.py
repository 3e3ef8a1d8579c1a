"""Names in a JetStream cluster (layer 6, pure): peer ids and Raft group names, as nats-server makes
them (spec/clustering.md §4.2, §4.3).

* A peer id is the first 8 bytes of SHA-256(server_name), each byte mapped through the 62-letter
  alphabet below (`n1` -> `fjFyEjc1`): operators and the nats CLI see it as `peer`.
* A group name is `<S|C>-R<replicas><F|M>-<8 random base62 letters>` (`S-R3F-FuW7YT38`): the suffix is
  random, not derived from the asset's name, so a re-created stream gets a new group.
"""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
META_GROUP = "_meta_"


def peer_id(server_name: str) -> str:
    digest = hashlib.sha256(server_name.encode()).digest()
    return "".join(ALPHABET[byte % 62] for byte in digest[:8])


def _suffix() -> str:
    return "".join(ALPHABET[byte % 62] for byte in secrets.token_bytes(8))


def group_name(kind: str, replicas: int, storage: str) -> str:
    """A new Raft group name: kind "S" (stream) or "C" (consumer), storage "file" or "memory"."""
    return f"{kind}-R{replicas}{'M' if storage == 'memory' else 'F'}-{_suffix()}"


__all__ = ["ALPHABET", "META_GROUP", "group_name", "peer_id"]
