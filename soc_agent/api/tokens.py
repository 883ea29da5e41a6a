"""API tokens: a random secret shown once; only its SHA-256 is stored, in the store file.

`create_token` and `revoke_token` are what `soc-agent tokens create|revoke`
call; both are audited. The token's name is the analyst identity recorded in
the audit log and counted for four-eyes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soc_agent.api._sqlite import ThreadedSQLite
from soc_agent.api.config import Role
from soc_agent.audit import SQLiteAuditLog
from soc_agent.config import Settings
from soc_agent.errors import SocAgentError
from soc_agent.models import AuditEvent

__all__ = [
    "TOKEN_PREFIX",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "soc_"  # noqa: S105 - a marker, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

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


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """The `api_tokens` table. Lookups are by hash, so no secret is ever held at rest."""

    def __init__(self, path: str | Path) -> None:
        self._db = ThreadedSQLite(path, _SCHEMA, name="api-tokens")

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, role: Role, now: datetime) -> str:
        """A new token for `name`; the secret is returned once and never stored."""
        if not _NAME.match(name):
            raise TokenError(
                f"invalid token name {name[:70]!r}: 1-64 letters, digits, '.', '_', '@' or '-'"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)

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

        if not self._db.call(insert):
            raise TokenError(f"an active token named {name!r} exists; revoke it first")
        return secret

    def revoke(self, name: str, now: datetime) -> None:
        cur = self._db.call(
            lambda db: db.execute(
                "UPDATE api_tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                (now.isoformat(), name),
            )
        )
        if cur.rowcount != 1:
            raise TokenError(f"no active token named {name!r}")

    def records(self) -> list[TokenRecord]:
        rows = self._db.call(
            lambda db: db.execute(
                "SELECT name, role, created_at, revoked_at, last_used_at FROM api_tokens "
                "ORDER BY name"
            ).fetchall()
        )
        return [_record(r) for r in rows]

    async def lookup(self, secret: str, now: datetime) -> TokenRecord | None:
        """The active token with this secret, or None; records when it was last used."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        digest = hash_token(secret)
        stale = (now - timedelta(minutes=1)).isoformat()

        def find(db: sqlite3.Connection) -> tuple[str, ...] | None:
            row: tuple[str, ...] | None = db.execute(
                "SELECT name, role, created_at, revoked_at, last_used_at FROM api_tokens "
                "WHERE token_hash=? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
            # Record use at most once a minute: no write on every request.
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


async def _audit(settings: Settings, event: AuditEvent) -> None:
    key = settings.audit_hmac_key()
    log = SQLiteAuditLog(settings.store, key=key)
    try:
        await log.append(event)
    finally:
        log.close()


async def create_token(settings: Settings, name: str, role: Role, *, actor: str) -> str:
    """Create a token (audited, without its secret) and return the secret to show once."""
    now = datetime.now(UTC)
    store = TokenStore(settings.store)
    try:
        secret = store.create(name, role, now)
    finally:
        store.close()
    await _audit(
        settings,
        AuditEvent(
            actor=actor,
            action="api.token_create",
            subject=name,
            outcome="created",
            details={"role": role.value},
            at=now,
        ),
    )
    return secret


async def revoke_token(settings: Settings, name: str, *, actor: str) -> None:
    now = datetime.now(UTC)
    store = TokenStore(settings.store)
    try:
        store.revoke(name, now)
    finally:
        store.close()
    await _audit(
        settings,
        AuditEvent(actor=actor, action="api.token_revoke", subject=name, outcome="revoked", at=now),
    )


def list_tokens(settings: Settings) -> list[TokenRecord]:
    store = TokenStore(settings.store)
    try:
        return store.records()
    finally:
        store.close()
