"""NATS JWTs for tests (operator mode): an operator, an account and a user with nkeys from the
`nkeys` package, the claims nats-server reads (v2), and a `.creds` file as `nsc` writes it.

A JWT is ``base64url(header).base64url(claims).base64url(ed25519 signature of the first two)``,
unpadded, with header ``{"typ":"JWT","alg":"ed25519-nkey"}``; the issuer (`iss`) signs. Limits are
spelled out as -1 (unlimited): an absent limit reads as 0 in nats-server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import nkeys


@dataclass
class Key:
    seed: str
    public: str

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def new_key(prefix: int) -> Key:
    seed = nkeys.encode_seed(os.urandom(32), prefix).decode()
    return Key(seed, nkeys.from_seed(bytearray(seed.encode())).public_key.decode())


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def encode(claims: dict[str, Any], signer: Key) -> str:
    claims = dict(claims)
    claims.setdefault("iat", int(time.time()))
    claims["iss"] = signer.public
    body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    claims["jti"] = base64.b32encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    header = _b64(b'{"typ":"JWT","alg":"ed25519-nkey"}')
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(signer.sign(header + b"." + payload))
    return (header + b"." + payload + b"." + signature).decode()


UNLIMITED_ACCOUNT = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}


@dataclass
class Operator:
    operator: Key
    account: Key
    user: Key
    operator_jwt: str
    account_jwt: str
    user_jwt: str

    def server_config(self) -> str:
        """nats-server config lines for operator mode with this account preloaded."""
        return (
            f"operator: {self.operator_jwt}\nresolver: MEMORY\n"
            f"resolver_preload: {{ {self.account.public}: {self.account_jwt} }}\n"
        )

    def creds(self, user_jwt: str | None = None, seed: str | None = None) -> str:
        return creds_text(user_jwt or self.user_jwt, seed or self.user.seed)


def creds_text(user_jwt: str, seed: str) -> str:
    """A `.creds` file as `nsc` writes it: the user JWT and the seed that signs the nonce."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
    )


def operator_with_user(account_name: str = "A", user_name: str = "u") -> Operator:
    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_key(nkeys.PREFIX_BYTE_USER)
    operator_jwt = encode({"sub": operator.public, "name": "O", "nats": {"type": "operator", "version": 2}}, operator)
    account_jwt = encode(
        {
            "sub": account.public,
            "name": account_name,
            "nats": {"type": "account", "version": 2, "limits": UNLIMITED_ACCOUNT},
        },
        operator,
    )
    user_jwt = encode(
        {
            "sub": user.public,
            "name": user_name,
            "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        },
        account,
    )
    return Operator(operator, account, user, operator_jwt, account_jwt, user_jwt)
