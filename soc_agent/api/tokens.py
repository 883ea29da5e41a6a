"""API tokens: a random secret shown once; only its SHA-256 is stored.

Where they live follows `store_backend`: a table in the SQLite store file, or
the `<index_prefix>-api-tokens` index (`tokens_es`) so every API replica sees
the same tokens and a revocation everywhere at once.

`create_token`, `revoke_token` and `list_tokens` are what `soc-agent tokens
create|revoke|list` call; creating and revoking are audited on the backend's
audit log. The token's name is the analyst identity recorded in the audit log
and counted for four-eyes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from soc_agent.api._sqlite import ThreadedSQLite
from soc_agent.api.config import Role
from soc_agent.config import Settings
from soc_agent.errors import SocAgentError
from soc_agent.models import AuditEvent
from soc_agent.runtime.backend import Backend, open_backend

__all__ = [
    "LAST_USED_RESOLUTION",
    "TOKEN_PREFIX",
    "SQLiteTokenStore",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "check_token_name",
    "create_token",
    "hash_token",
    "list_tokens",
    "new_secret",
    "open_token_store",
    "plausible_secret",
    "revoke_token",
    "token_records",
]

TOKEN_PREFIX = "soc_"  # noqa: S105 - a marker, not a secret
# Use is recorded at most this often per token: no write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_MAX_SECRET = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
  name TEXT PRIMARY KEY, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT);
"""


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


class SQLiteTokenStore:
    """The `api_tokens` table in the store file. Lookups are by hash, so no secret is held."""

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


@asynccontextmanager
async def open_token_store(backend: Backend) -> AsyncIterator[TokenStore]:
    """The token store of `backend` (its index created if missing), closed on the way out.

    The Elasticsearch store borrows the backend's client rather than opening another.
    """
    if backend.kind == "elasticsearch":
        from soc_agent.api.tokens_es import ElasticsearchTokenStore

        assert backend.es is not None
        yield await ElasticsearchTokenStore.open(backend.es, backend.settings.elasticsearch)
        return
    sqlite_store = SQLiteTokenStore(backend.settings.store)
    try:
        yield sqlite_store
    finally:
        sqlite_store.close()


async def create_token(settings: Settings, name: str, role: Role, *, actor: str) -> str:
    """Create a token (audited, without its secret) and return the secret to show once."""
    now = datetime.now(UTC)
    async with open_backend(settings) as backend, open_token_store(backend) as store:
        secret = await store.create(name, role, now)
        await backend.audit.append(
            AuditEvent(
                actor=actor,
                action="api.token_create",
                subject=name,
                outcome="created",
                details={"role": role.value},
                at=now,
            )
        )
    return secret


async def revoke_token(settings: Settings, name: str, *, actor: str) -> None:
    """Revoke `name`'s token (audited); its web sessions end on their next request."""
    now = datetime.now(UTC)
    async with open_backend(settings) as backend, open_token_store(backend) as store:
        await store.revoke(name, now)
        await backend.audit.append(
            AuditEvent(
                actor=actor, action="api.token_revoke", subject=name, outcome="revoked", at=now
            )
        )


async def token_records(settings: Settings) -> list[TokenRecord]:
    """Every token on the configured backend, ordered by name (never the secrets)."""
    async with open_backend(settings) as backend, open_token_store(backend) as store:
        return await store.records()


def list_tokens(settings: Settings) -> list[TokenRecord]:
    """`token_records` for synchronous callers (the CLI); not from inside an event loop."""
    return asyncio.run(token_records(settings))
