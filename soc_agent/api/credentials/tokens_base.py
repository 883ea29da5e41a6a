"""API tokens: a random secret shown once; only its SHA-256 is stored.

Where they live follows `store_backend`: a table in the SQLite store file
(`tokens_sqlite`), or the `<index_prefix>-api-tokens` index
(`tokens_elasticsearch`) so every API replica sees the same tokens and a
revocation everywhere at once. This module holds the protocol and what both
implementations share; `commands` creates, revokes and lists them for the CLI.

The token's name is the analyst identity recorded in the audit log and
counted for four-eyes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from soc_agent.errors import SocAgentError
from soc_agent.models import Role

__all__ = [
    "LAST_USED_RESOLUTION",
    "TOKEN_PREFIX",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "check_token_name",
    "hash_token",
    "new_secret",
    "plausible_secret",
]

TOKEN_PREFIX = "soc_"  # noqa: S105 - a marker, not a secret
# Use is recorded at most this often per token: no write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_MAX_SECRET = 200


class TokenError(SocAgentError):
    """A token cannot be created or revoked as asked (bad name, duplicate, unknown)."""


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class TokenStore(Protocol):
    """Token hashes by name. Every implementation sees its own and other replicas' latest
    writes in `lookup` and `is_active`, so a revocation takes effect on the next request."""

    async def create(self, name: str, role: Role, now: datetime) -> str:
        """A new token for `name`, returned once and never stored; TokenError if `name`
        is invalid or already holds an active token."""
        ...

    async def revoke(self, name: str, now: datetime) -> None:
        """Revoke `name`'s active token; TokenError if it has none."""
        ...

    async def records(self) -> list[TokenRecord]:
        """Every token, active or revoked, ordered by name."""
        ...

    async def lookup(self, secret: str, now: datetime) -> TokenRecord | None:
        """The active token with this secret, or None; records when it was last used."""
        ...

    async def is_active(self, name: str) -> bool: ...


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_token_name(name: str) -> None:
    if not _NAME.match(name):
        raise TokenError(
            f"invalid token name {name[:70]!r}: 1-64 letters, digits, '.', '_', '@' or '-'"
        )


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def plausible_secret(secret: str) -> bool:
    """Whether `secret` could be one of ours; anything else is refused without a lookup."""
    return secret.startswith(TOKEN_PREFIX) and len(secret) <= _MAX_SECRET
