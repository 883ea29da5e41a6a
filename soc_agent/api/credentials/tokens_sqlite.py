"""API tokens in the `api_tokens` table of the SQLite store file (one machine)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from soc_agent.api.credentials._sqlite import ThreadedSQLite
from soc_agent.api.credentials.tokens_base import (
    LAST_USED_RESOLUTION,
    TokenError,
    TokenRecord,
    check_token_name,
    hash_token,
    new_secret,
    plausible_secret,
)
from soc_agent.models import Role

__all__ = ["SQLiteTokenStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
  name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT);
"""


class SQLiteTokenStore:
    """The `api_tokens` table in the store file; implements `TokenStore`.

    Lookups are by hash, so no secret is held.
    """

    def __init__(self, path: str | Path) -> None:
        self._db = ThreadedSQLite(path, _SCHEMA, name="api-tokens")

    def close(self) -> None:
        self._db.close()

    async def create(self, name: str, role: Role, now: datetime) -> str:
        check_token_name(name)
        secret = new_secret()

        def insert(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT revoked_at FROM api_tokens WHERE name=?", (name,)
                ).fetchone()
                if row is not None and row[0] is None:
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO api_tokens VALUES (?,?,?,?,NULL,NULL)",
                    (name, role.value, hash_token(secret), now.isoformat()),
                )
                return True
            finally:
                db.execute("COMMIT")

        if not await self._db.run(insert):
            raise TokenError(f"an active token named {name!r} exists; revoke it first")
        return secret

    async def revoke(self, name: str, now: datetime) -> None:
        cur = await self._db.run(
            lambda db: db.execute(
                "UPDATE api_tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                (now.isoformat(), name),
            )
        )
        if cur.rowcount != 1:
            raise TokenError(f"no active token named {name!r}")

    async def records(self) -> list[TokenRecord]:
        rows = await self._db.run(
            lambda db: db.execute(
                "SELECT name, role, created_at, revoked_at, last_used_at FROM api_tokens "
                "ORDER BY name"
            ).fetchall()
        )
        return [_record(r) for r in rows]

    async def lookup(self, secret: str, now: datetime) -> TokenRecord | None:
        if not plausible_secret(secret):
            return None
        digest = hash_token(secret)
        stale = (now - LAST_USED_RESOLUTION).isoformat()

        def find(db: sqlite3.Connection) -> tuple[str, ...] | None:
            row: tuple[str, ...] | None = db.execute(
                "SELECT name, role, created_at, revoked_at, last_used_at FROM api_tokens "
                "WHERE token_hash=? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
            if row is not None and (row[4] is None or row[4] < stale):
                db.execute(
                    "UPDATE api_tokens SET last_used_at=? WHERE name=?", (now.isoformat(), row[0])
                )
            return row

        row = await self._db.run(find)
        return _record(row) if row else None

    async def is_active(self, name: str) -> bool:
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT 1 FROM api_tokens WHERE name=? AND revoked_at IS NULL", (name,)
            ).fetchone()
        )
        return row is not None


def _record(row: tuple[str, ...]) -> TokenRecord:
    def ts(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    created = ts(row[2])
    assert created is not None
    return TokenRecord(row[0], Role(row[1]), created, ts(row[3]), ts(row[4]))
