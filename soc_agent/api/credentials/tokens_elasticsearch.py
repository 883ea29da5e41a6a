"""API tokens in Elasticsearch, shared by every API replica and `soc-agent tokens`.

One index, `<prefix>-api-tokens`, two kinds of document:

- `name:<name>`, the token record and the authority: role, the SHA-256 of the
  current secret, created/revoked/last-used times. Creating and revoking are
  compare-and-set writes on it (`op_type=create`, `if_seq_no`), so two
  operators racing cannot both hold an active token under one name.
- `hash:<sha256>`, a pointer from a secret's hash to the name. A bearer is
  authenticated with two GETs (pointer, then record), both real-time, and
  accepted only if the record is active and still carries that same hash: a
  stale or orphaned pointer authenticates nothing, so the pointer is written
  before the record and removed after it, best effort.

Only the list (`records`) searches; creating and revoking wait for a refresh
so a `tokens list` right after sees them.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any

from elasticsearch import ApiError, ConflictError, NotFoundError, TransportError

from soc_agent.api.credentials._elasticsearch import IndexStore, es_errors
from soc_agent.api.credentials.tokens_base import (
    LAST_USED_RESOLUTION,
    TokenError,
    TokenRecord,
    check_token_name,
    hash_token,
    new_secret,
    plausible_secret,
)
from soc_agent.elasticsearch_setup import DATE, KEYWORD, parse_ts, ts
from soc_agent.errors import StoreError
from soc_agent.models import Role

__all__ = ["ElasticsearchTokenStore"]

log = logging.getLogger(__name__)

_PROPERTIES: dict[str, Any] = {
    "kind": KEYWORD,  # "token" (a record) or "hash" (a pointer)
    "name": KEYWORD,
    "role": KEYWORD,
    "token_hash": KEYWORD,
    "created_at": DATE,
    "revoked_at": DATE,
    "last_used_at": DATE,
}
# Conflicts mean another operator wrote the same name between our read and write;
# a handful of rereads settles any human-paced race.
_MAX_CAS_ATTEMPTS = 20
_PAGE = 1000


def _record_id(name: str) -> str:
    return f"name:{name}"


def _pointer_id(digest: str) -> str:
    return f"hash:{digest}"


class ElasticsearchTokenStore(IndexStore):
    """Implements `tokens_base.TokenStore` in `<index_prefix>-api-tokens`."""

    PROPERTIES = _PROPERTIES
    SUFFIX = "api-tokens"

    async def create(self, name: str, role: Role, now: datetime) -> str:
        check_token_name(name)
        secret = new_secret()
        digest = hash_token(secret)
        with es_errors(f"creating API token {name!r}"):
            # The pointer first: alone it authenticates nothing (lookup trusts only the
            # record), so whatever fails after it leaves nothing usable behind.
            await self._es.index(
                index=self.index,
                id=_pointer_id(digest),
                document={"kind": "hash", "name": name, "token_hash": digest},
                op_type="create",
            )
            try:
                replaced = await self._claim_name(name, role, digest, now)
            except BaseException:
                await self._delete_pointer(digest)
                raise
        if replaced is not None:
            await self._delete_pointer(replaced)
        return secret

    async def _claim_name(self, name: str, role: Role, digest: str, now: datetime) -> str | None:
        """Make `digest` the token of `name` unless `name` holds an active one (TokenError).

        Returns the hash of the revoked token it replaced, if any.
        """
        record = {
            "kind": "token",
            "name": name,
            "role": role.value,
            "token_hash": digest,
            "created_at": ts(now),
            "revoked_at": None,
            "last_used_at": None,
        }
        for _ in range(_MAX_CAS_ATTEMPTS):
            current = await self._get(_record_id(name))
            cas: dict[str, Any]
            if current is None:
                cas = {"op_type": "create"}
            elif current[0].get("revoked_at") is None:
                raise TokenError(f"an active token named {name!r} exists; revoke it first")
            else:
                cas = {"if_seq_no": current[1], "if_primary_term": current[2]}
            try:
                # wait_for: a `tokens list` (a search) right after must show it.
                await self._es.index(
                    index=self.index,
                    id=_record_id(name),
                    document=record,
                    refresh="wait_for",
                    **cas,
                )
            except ConflictError:
                continue  # another writer got there first: reread and decide again
            return None if current is None else str(current[0]["token_hash"])
        raise StoreError(
            f"creating API token {name!r}: no consistent write after {_MAX_CAS_ATTEMPTS} attempts"
        )

    async def revoke(self, name: str, now: datetime) -> None:
        with es_errors(f"revoking API token {name!r}"):
            for _ in range(_MAX_CAS_ATTEMPTS):
                current = await self._get(_record_id(name))
                if current is None or current[0].get("revoked_at") is not None:
                    raise TokenError(f"no active token named {name!r}")
                source, seq_no, primary_term = current
                try:
                    await self._es.update(
                        index=self.index,
                        id=_record_id(name),
                        doc={"revoked_at": ts(now)},
                        if_seq_no=seq_no,
                        if_primary_term=primary_term,
                        refresh="wait_for",
                    )
                except ConflictError:
                    continue
                await self._delete_pointer(str(source["token_hash"]))
                return
        raise StoreError(
            f"revoking API token {name!r}: no consistent write after {_MAX_CAS_ATTEMPTS} attempts"
        )

    async def records(self) -> list[TokenRecord]:
        out: list[TokenRecord] = []
        after: list[Any] | None = None
        with es_errors("listing API tokens"):
            while True:
                page = await self._es.search(
                    index=self.index,
                    query={"term": {"kind": "token"}},
                    sort=[{"name": "asc"}],
                    size=_PAGE,
                    search_after=after,
                    track_total_hits=False,
                )
                hits = page["hits"]["hits"]
                out.extend(_record(h["_source"]) for h in hits)
                if len(hits) < _PAGE:
                    return out
                after = hits[-1]["sort"]

    async def lookup(self, secret: str, now: datetime) -> TokenRecord | None:
        if not plausible_secret(secret):
            return None
        digest = hash_token(secret)
        with es_errors("looking up an API token"):
            pointer = await self._get(_pointer_id(digest))
            if pointer is None:
                return None
            current = await self._get(_record_id(str(pointer[0]["name"])))
            if current is None:
                return None
            source, seq_no, primary_term = current
            # The record decides: a pointer left behind by a revoked or replaced token
            # (its removal is best effort) must not authenticate.
            if source.get("token_hash") != digest or source.get("revoked_at") is not None:
                return None
            record = _record(source)
            stale = parse_ts(ts(now - LAST_USED_RESOLUTION))  # aware, as the stored times
            assert stale is not None
            if record.last_used_at is None or record.last_used_at < stale:
                # A conflict means another request recorded the use, or the token changed;
                # this request was authenticated on the version it read, as in SQLite.
                with contextlib.suppress(ConflictError):
                    await self._es.update(
                        index=self.index,
                        id=_record_id(record.name),
                        doc={"last_used_at": ts(now)},
                        if_seq_no=seq_no,
                        if_primary_term=primary_term,
                    )
            return record

    async def is_active(self, name: str) -> bool:
        with es_errors("checking an API token"):
            current = await self._get(_record_id(name))
        return current is not None and current[0].get("revoked_at") is None

    async def _get(self, doc_id: str) -> tuple[dict[str, Any], int, int] | None:
        """The document's source, seq_no and primary term (a real-time GET), or None."""
        try:
            got = await self._es.get(index=self.index, id=doc_id)
        except NotFoundError:
            return None
        return dict(got["_source"]), int(got["_seq_no"]), int(got["_primary_term"])

    async def _delete_pointer(self, digest: str) -> None:
        """Remove a pointer that no longer authenticates; only tidiness depends on it."""
        try:
            await self._es.delete(index=self.index, id=_pointer_id(digest))
        except NotFoundError:
            pass
        except (ApiError, TransportError) as exc:
            # A leftover pointer is inert (the record decides), so record it and go on.
            log.warning(
                "%s: could not remove a stale token pointer: %s", self.index, type(exc).__name__
            )


def _record(source: dict[str, Any]) -> TokenRecord:
    created = parse_ts(source["created_at"])
    assert created is not None
    return TokenRecord(
        name=str(source["name"]),
        role=Role(source["role"]),
        created_at=created,
        revoked_at=parse_ts(source.get("revoked_at")),
        last_used_at=parse_ts(source.get("last_used_at")),
    )
