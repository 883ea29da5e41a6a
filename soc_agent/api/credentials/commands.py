"""What `soc-agent tokens create|revoke|list` call, on the configured backend.

Creating and revoking are audited on the backend's audit log (never with the
secret); the token's name is the analyst identity the audit log records.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from soc_agent.api.credentials.factory import open_token_store
from soc_agent.api.credentials.tokens_base import TokenRecord
from soc_agent.models import AuditEvent, Role
from soc_agent.runtime.backend import open_backend
from soc_agent.settings import Settings

__all__ = ["create_token", "list_tokens", "revoke_token", "token_records"]


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
