"""NATS JWTs (layer 0): decoding and verifying the operator, account and user JWTs of operator mode.

A NATS JWT is ``base64url(header).base64url(claims).base64url(signature)`` (unpadded), header
``{"typ":"JWT","alg":"ed25519-nkey"}`` (v2; v1's ``"alg":"ed25519"`` is read too); the issuer
(`iss`, an nkey public key: an operator `O…` for operator and account JWTs, an account `A…` for
user JWTs) signs the first two parts with ed25519. The claims nats-server reads sit under `nats`
(`type`: operator | account | user). The trust chain is checked in jsedge.routing.jwtauth.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

_PREFIX = {"O": 14 << 3, "A": 0, "U": 20 << 3}


class JWTError(ValueError):
    pass


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JWTError("invalid encoding") from exc


def public_key_bytes(public_key: str, kinds: str) -> bytes | None:
    """The 32 ed25519 bytes of an nkey public key whose kind (first letter) is in `kinds`."""
    import nkeys  # type: ignore[import-untyped]

    if not public_key or public_key[0] not in kinds:
        return None
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 35 or raw[0] != _PREFIX[public_key[0]]:
        return None
    if nkeys.crc16(bytearray(raw[:-2])) != int.from_bytes(raw[-2:], "little"):
        return None
    return raw[1:33]


def verify_signature(public_key: str, kinds: str, data: bytes, signature: bytes) -> bool:
    key = public_key_bytes(public_key, kinds)
    if key is None:
        return False
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def decode(token: str, kind: str) -> dict[str, Any]:
    """The claims of a JWT of `kind` (operator, account, user) whose signature is its issuer's;
    raises JWTError."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JWTError("expected 3 chunks")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except ValueError as exc:
        raise JWTError("invalid json") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("invalid json")
    if header.get("alg") not in ("ed25519-nkey", "ed25519"):
        raise JWTError("unexpected algorithm")
    nats = claims.get("nats")
    claim_type = (nats.get("type") if isinstance(nats, dict) else None) or claims.get("type")
    if claim_type != kind:
        raise JWTError(f"not a {kind} claim")
    issuer = claims.get("iss")
    issuer_kinds = {"operator": "O", "account": "O", "user": "A", "activation": "A"}[kind]
    signature = _b64decode(parts[2])
    if not isinstance(issuer, str) or not verify_signature(
        issuer, issuer_kinds, (parts[0] + "." + parts[1]).encode(), signature
    ):
        raise JWTError("claim failed V2 signature verification")
    if not isinstance(claims.get("sub"), str):
        raise JWTError("missing subject")
    return claims


def time_valid(claims: dict[str, Any], now: float | None = None) -> bool:
    """Not expired (`exp`) and not before its time (`nbf`)."""
    now = time.time() if now is None else now
    expires = claims.get("exp")
    if isinstance(expires, (int, float)) and expires > 0 and expires <= now:
        return False
    not_before = claims.get("nbf")
    return not (isinstance(not_before, (int, float)) and not_before > now)


def read_decorated(text: str) -> str:
    """The JWT in a file `nsc` wrote (`-----BEGIN ... JWT-----` decorations), or the text itself."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("eyJ"):
            return line
    return text.strip()


def decode_generic(token: str) -> dict[str, Any]:
    """The claims of any NATS JWT whose signature is its issuer's (an operator, account or user
    key), whatever its type; raises JWTError."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JWTError("expected 3 chunks")
    try:
        claims = json.loads(_b64decode(parts[1]))
    except ValueError as exc:
        raise JWTError("invalid json") from exc
    if not isinstance(claims, dict):
        raise JWTError("invalid json")
    issuer = claims.get("iss")
    signature = _b64decode(parts[2])
    if not isinstance(issuer, str) or not verify_signature(
        issuer, "OAU", (parts[0] + "." + parts[1]).encode(), signature
    ):
        raise JWTError("claim failed V2 signature verification")
    return claims


def verify_signature_text(public_key: str, kinds: str, data: bytes, signature: str) -> bool:
    """`verify_signature` of a signature as a CONNECT carries it: base64url without padding, or
    standard base64 (nats-server accepts both)."""
    if not signature or not public_key:
        return False
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (binascii.Error, ValueError):
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
    return verify_signature(public_key, kinds, data, raw)
