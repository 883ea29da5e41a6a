"""Web sessions: a random cookie value whose hash keys a server-side row.

The row holds who logged in, the session's CSRF token, its expiry and a
one-shot flash message. Logging out or revoking the underlying API token ends
the session at once (the row is checked on every request).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from soc_agent.api._sqlite import ThreadedSQLite
from soc_agent.api.config import Role
from soc_agent.api.identity import Principal

__all__ = ["Session", "SessionStore"]

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


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: str | Path) -> None:
        self._db = ThreadedSQLite(path, _SCHEMA, name="api-sessions")

    def close(self) -> None:
        self._db.close()

    async def create(self, principal: Principal, ttl: timedelta, now: datetime) -> str:
        """Open a session; returns the cookie value (never stored, only its hash)."""
        session_id = secrets.token_urlsafe(32)
        expires = now + ttl
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        doc = json.dumps(
            {
                "name": principal.name,
                "role": principal.role.value,
                "source": principal.source,
                "token_name": principal.token_name,
            }
        )

        def insert(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM api_sessions WHERE expires_at <= ?", (now.isoformat(),))
            db.execute(
                "INSERT INTO api_sessions VALUES (?,?,?,?,?,NULL)",
                (
                    _digest(session_id),
                    doc,
                    secrets.token_urlsafe(32),
                    now.isoformat(),
                    expires.isoformat(),
                ),
            )

        await self._db.run(insert)
        return session_id

    async def get(self, session_id: str, now: datetime) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT principal, csrf, expires_at FROM api_sessions WHERE id_hash=?",
                (_digest(session_id),),
            ).fetchone()
        )
        if row is None:
            return None
        expires = datetime.fromisoformat(row[2])
        if now >= expires:
            await self.delete(session_id)
            return None
        doc = json.loads(row[0])
        principal = Principal(
            name=doc["name"],
            role=Role(doc["role"]),
            source=doc["source"],
            token_name=doc.get("token_name"),
            expires_at=expires,
        )
        return Session(principal, row[1], expires)

    async def delete(self, session_id: str) -> None:
        await self._db.run(
            lambda db: db.execute(
                "DELETE FROM api_sessions WHERE id_hash=?", (_digest(session_id),)
            )
        )

    async def set_flash(self, session_id: str, message: str) -> None:
        await self._db.run(
            lambda db: db.execute(
                "UPDATE api_sessions SET flash=? WHERE id_hash=?",
                (message[:1000], _digest(session_id)),
            )
        )

    async def pop_flash(self, session_id: str) -> str | None:
        def pop(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT flash FROM api_sessions WHERE id_hash=?", (_digest(session_id),)
            ).fetchone()
            if row is None or row[0] is None:
                return None
            db.execute("UPDATE api_sessions SET flash=NULL WHERE id_hash=?", (_digest(session_id),))
            return str(row[0])

        return await self._db.run(pop)
