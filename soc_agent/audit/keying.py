"""The audit chain's key: where it comes from, and the entry that says the chain is keyed.

An unkeyed chain proves nothing against someone who can write the store: they
can rebuild every hash. So a writer always holds a key (the configured
`audit_key`, or a key file generated beside the SQLite store on first start)
and, before its first append, makes sure the chain carries a `audit.keyed`
entry naming the key's id. Entries from that marker on are HMAC-sealed, so a
verifier without the key fails loudly instead of passing a chain it cannot
check, and a verifier with the key rejects a chain rebuilt without it (the
marker is missing or does not verify).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from soc_agent.audit.base import AuditLog
from soc_agent.audit.chain import KEYED_ACTION, key_id
from soc_agent.errors import StoreError
from soc_agent.models import AuditEvent

__all__ = [
    "KEYED_ACTION",
    "chain_key_id",
    "ensure_keyed",
    "key_file_for",
    "key_id",
    "read_key_file",
    "write_new_key_file",
]


def key_file_for(store: Path) -> Path:
    """Where the embedded runtime keeps its generated key: beside the store."""
    return store.with_name(store.name + ".audit-key")


def read_key_file(path: Path) -> bytes | None:
    """The key in `path`, or None when the file does not exist."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the audit key file: {type(exc).__name__}") from None
    if len(text) < 32:
        raise StoreError(f"{path}: the audit key file is too short (at least 32 characters)")
    return text.encode("ascii")


def write_new_key_file(path: Path) -> bytes:
    """Create `path` (mode 0600, never overwriting) with a fresh 256-bit key and return it.

    The key is written to a private temporary file first and linked into place, so a
    process starting at the same moment never reads a half-written key: it either
    finds no file or the whole one, and whoever links second uses the first's key.
    """
    key = secrets.token_hex(32)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".audit-key-", dir=path.parent)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the audit key file: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:  # mkstemp files are 0600
            out.write(key + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = read_key_file(path)
            if existing is None:  # pragma: no cover - deleted between the two calls
                raise StoreError(f"{path}: the audit key file vanished while created") from None
            return existing
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the audit key file: {exc.strerror}") from None
    finally:
        os.unlink(tmp)
    return key.encode("ascii")


async def chain_key_id(audit: AuditLog) -> str | None:
    """The key id the chain's latest marker names, or None when the chain is not keyed."""
    markers = await audit.list(action_prefix=KEYED_ACTION, newest_first=True, limit=1)
    if not markers or markers[0].action != KEYED_ACTION:
        return None
    value = markers[0].details.get("key_id")
    return value if isinstance(value, str) else ""


async def ensure_keyed(audit: AuditLog, key: bytes, *, actor: str, where: str) -> None:
    """Append the keyed marker unless the chain already names this key; refuse another key.

    `where` says where the key came from (a setting or a file), for the error.
    """
    mine = key_id(key)
    current = await chain_key_id(audit)
    if current == mine:
        return
    if current is not None:
        raise StoreError(
            f"the audit chain is keyed with key id {current}, but {where} holds key id {mine}: "
            "restore the original key (appending with another key would break the chain)"
        )
    await audit.append(
        AuditEvent(
            actor=actor,
            action=KEYED_ACTION,
            subject="audit",
            reason="entries from here on are HMAC-SHA256 sealed with the key named by key_id",
            outcome="keyed",
            details={"key_id": mine, "algorithm": "hmac-sha256"},
            at=datetime.now(UTC),
        )
    )
