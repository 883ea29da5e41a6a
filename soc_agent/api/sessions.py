"""Web sessions: a random cookie value whose hash keys a server-side record.

The record holds who logged in, the session's CSRF token, its expiry and a
one-shot flash message. Logging out or revoking the underlying API token ends
the session at once (the record is read on every request). Records live where
`store_backend` says: a table in the SQLite store file, or the
`<index_prefix>-api-sessions` index (`sessions_es`) so a session opened on one
API replica is valid on every other, and a logout on one ends it on all.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from soc_agent.api._sqlite import ThreadedSQLite
from soc_agent.api.config import Role
from soc_agent.api.identity import Principal
from soc_agent.runtime.backend import Backend

__all__ = [
    "FLASH_LIMIT",
    "SQLiteSessionStore",
    "Session",
    "SessionStore",
    "hash_session_id",
    "new_session_secrets",
    "open_session_store",
    "plausible_session_id",
    "principal_fields",
    "principal_from",
    "session_expiry",
]

FLASH_LIMIT = 1000
_MAX_SESSION_ID = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_sessions (
  id_hash TEXT PRIMARY KEY, principal TEXT NOT NULL, csrf TEXT NOT NULL,
  created_at TEXT NOT NULL, expires_at TEXT NOT NULL, flash TEXT);
"""


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


class SQLiteSessionStore:
    """The `api_sessions` table in the store file."""

    def __init__(self, path: str | Path) -> None:
        self._db = ThreadedSQLite(path, _SCHEMA, name="api-sessions")

    def close(self) -> None:
        self._db.close()

    async def create(self, principal: Principal, ttl: timedelta, now: datetime) -> str:
        session_id, csrf = new_session_secrets()
        expires = session_expiry(principal, ttl, now)
        doc = json.dumps(principal_fields(principal))

        def insert(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM api_sessions WHERE expires_at <= ?", (now.isoformat(),))
            db.execute(
                "INSERT INTO api_sessions VALUES (?,?,?,?,?,NULL)",
                (
                    hash_session_id(session_id),
                    doc,
                    csrf,
                    now.isoformat(),
                    expires.isoformat(),
                ),
            )

        await self._db.run(insert)
        return session_id

    async def get(self, session_id: str, now: datetime) -> Session | None:
        if not plausible_session_id(session_id):
            return None
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT principal, csrf, expires_at FROM api_sessions WHERE id_hash=?",
                (hash_session_id(session_id),),
            ).fetchone()
        )
        if row is None:
            return None
        expires = datetime.fromisoformat(row[2])
        if now >= expires:
            await self.delete(session_id)
            return None
        return Session(principal_from(json.loads(row[0]), expires), row[1], expires)

    async def delete(self, session_id: str) -> None:
        await self._db.run(
            lambda db: db.execute(
                "DELETE FROM api_sessions WHERE id_hash=?", (hash_session_id(session_id),)
            )
        )

    async def set_flash(self, session_id: str, message: str) -> None:
        await self._db.run(
            lambda db: db.execute(
                "UPDATE api_sessions SET flash=? WHERE id_hash=?",
                (message[:FLASH_LIMIT], hash_session_id(session_id)),
            )
        )

    async def pop_flash(self, session_id: str) -> str | None:
        digest = hash_session_id(session_id)

        def pop(db: sqlite3.Connection) -> str | None:
            # One write transaction: two servers on one store file cannot both take it.
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT flash FROM api_sessions WHERE id_hash=?", (digest,)
                ).fetchone()
                if row is None or row[0] is None:
                    return None
                db.execute("UPDATE api_sessions SET flash=NULL WHERE id_hash=?", (digest,))
                return str(row[0])
            finally:
                db.execute("COMMIT")

        return await self._db.run(pop)


@asynccontextmanager
async def open_session_store(backend: Backend) -> AsyncIterator[SessionStore]:
    """The session store of `backend` (its index created if missing), closed on the way out.

    The Elasticsearch store borrows the backend's client rather than opening another.
    """
    if backend.kind == "elasticsearch":
        from soc_agent.api.sessions_es import ElasticsearchSessionStore

        assert backend.es is not None
        yield await ElasticsearchSessionStore.open(backend.es, backend.settings.elasticsearch)
        return
    sqlite_store = SQLiteSessionStore(backend.settings.store)
    try:
        yield sqlite_store
    finally:
        sqlite_store.close()
