"""Web sessions in the `api_sessions` table of the SQLite store file (one machine)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from soc_agent.api.credentials._sqlite import ThreadedSQLite
from soc_agent.api.credentials.sessions_base import (
    FLASH_LIMIT,
    Session,
    hash_session_id,
    new_session_secrets,
    plausible_session_id,
    principal_fields,
    principal_from,
    session_expiry,
)
from soc_agent.api.identity import Principal

__all__ = ["SQLiteSessionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_sessions (
  id_hash TEXT PRIMARY KEY, principal TEXT NOT NULL, csrf TEXT NOT NULL,
  created_at TEXT NOT NULL, expires_at TEXT NOT NULL, flash TEXT);
"""


class SQLiteSessionStore:
    """The `api_sessions` table in the store file. Implements `SessionStore`."""

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
