"""Web sessions: a random cookie value whose hash keys a server-side record.

The record holds who logged in, the session's CSRF token, its expiry and a
one-shot flash message. Logging out or revoking the underlying API token ends
the session at once (the record is read on every request). Records live where
`store_backend` says: a table in the SQLite store file (`sessions_sqlite`), or
the `<index_prefix>-api-sessions` index (`sessions_elasticsearch`) so a session
opened on one API replica is valid on every other, and a logout on one ends it
on all. This module holds the protocol and what both implementations share.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from soc_agent.api.identity import Principal
from soc_agent.models import Role

__all__ = [
    "FLASH_LIMIT",
    "Session",
    "SessionStore",
    "hash_session_id",
    "new_session_secrets",
    "plausible_session_id",
    "principal_fields",
    "principal_from",
    "session_expiry",
]

FLASH_LIMIT = 1000
_MAX_SESSION_ID = 100


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: datetime


class SessionStore(Protocol):
    """Server-side web sessions; every read sees the latest write from any replica."""

    async def create(self, principal: Principal, ttl: timedelta, now: datetime) -> str:
        """Open a session; returns the cookie value (never stored, only its hash)."""
        ...

    async def get(self, session_id: str, now: datetime) -> Session | None:
        """The live session, or None (unknown, ended, or expired: then it is removed)."""
        ...

    async def delete(self, session_id: str) -> None: ...

    async def set_flash(self, session_id: str, message: str) -> None: ...

    async def pop_flash(self, session_id: str) -> str | None:
        """The flash message, removed: shown once, even with replicas racing."""
        ...


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def plausible_session_id(session_id: str) -> bool:
    return bool(session_id) and len(session_id) <= _MAX_SESSION_ID


def new_session_secrets() -> tuple[str, str]:
    """A fresh (cookie value, CSRF token)."""
    return secrets.token_urlsafe(32), secrets.token_urlsafe(32)


def session_expiry(principal: Principal, ttl: timedelta, now: datetime) -> datetime:
    """`now + ttl`, but never past the credential's own expiry (an OIDC token's `exp`)."""
    expires = now + ttl
    if principal.expires_at is not None:
        expires = min(expires, principal.expires_at)
    return expires


def principal_fields(principal: Principal) -> dict[str, Any]:
    """What a session records of who logged in (its expiry is the session's own)."""
    return {
        "name": principal.name,
        "role": principal.role.value,
        "source": principal.source,
        "token_name": principal.token_name,
    }


def principal_from(fields: dict[str, Any], expires: datetime) -> Principal:
    return Principal(
        name=fields["name"],
        role=Role(fields["role"]),
        source=fields["source"],
        token_name=fields.get("token_name"),
        expires_at=expires,
    )
