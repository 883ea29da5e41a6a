"""Web sessions in Elasticsearch, shared by every API replica.

One document per session in `<prefix>-api-sessions`, its id the SHA-256 of the
cookie value (the value itself is never stored). Every request reads its
session with a GET, which is real-time: a session opened on one replica is
valid on the next request to another, and a logout anywhere ends it
everywhere. The one-shot flash message is taken with compare-and-set
(`if_seq_no`), so two replicas racing cannot both show it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import ApiError, ConflictError, NotFoundError, TransportError

from soc_agent.api.credentials._elasticsearch import IndexStore, es_errors
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
from soc_agent.elasticsearch_setup import DATE, KEYWORD, STORED_ONLY, UNINDEXED_TEXT, parse_ts, ts
from soc_agent.errors import StoreError

__all__ = ["ElasticsearchSessionStore"]

log = logging.getLogger(__name__)

_PROPERTIES: dict[str, Any] = {
    "principal": {
        "properties": {
            "name": KEYWORD,
            "role": KEYWORD,
            "source": KEYWORD,
            "token_name": KEYWORD,
        }
    },
    "csrf": STORED_ONLY,
    "created_at": DATE,
    "expires_at": DATE,  # indexed: the sweep of expired sessions ranges over it
    "flash": UNINDEXED_TEXT,
}
# Only two writers touch a session at once in practice (a flash set while another
# tab pops it); a few rereads settle that.
_MAX_CAS_ATTEMPTS = 20
_SWEEP_BATCH = 500


class ElasticsearchSessionStore(IndexStore):
    """Implements `sessions_base.SessionStore` in `<index_prefix>-api-sessions`."""

    PROPERTIES = _PROPERTIES
    SUFFIX = "api-sessions"

    async def create(self, principal: Principal, ttl: timedelta, now: datetime) -> str:
        session_id, csrf = new_session_secrets()
        expires = session_expiry(principal, ttl, now)
        await self._sweep(now)
        with es_errors("opening a web session"):
            # op_type=create: a (vanishingly unlikely) id collision fails loudly instead
            # of taking over someone else's session.
            await self._es.index(
                index=self.index,
                id=hash_session_id(session_id),
                document={
                    "principal": principal_fields(principal),
                    "csrf": csrf,
                    "created_at": ts(now),
                    "expires_at": ts(expires),
                    "flash": None,
                },
                op_type="create",
            )
        return session_id

    async def get(self, session_id: str, now: datetime) -> Session | None:
        if not plausible_session_id(session_id):
            return None
        with es_errors("reading a web session"):
            got = await self._get(session_id)
        if got is None:
            return None
        source = got[0]
        expires = parse_ts(source["expires_at"])
        assert expires is not None
        if _aware(now) >= expires:
            await self.delete(session_id)
            return None
        return Session(principal_from(source["principal"], expires), str(source["csrf"]), expires)

    async def delete(self, session_id: str) -> None:
        with es_errors("ending a web session"), contextlib.suppress(NotFoundError):
            await self._es.delete(index=self.index, id=hash_session_id(session_id))

    async def set_flash(self, session_id: str, message: str) -> None:
        # A session that ended meanwhile has nobody left to show the message to.
        with es_errors("storing a flash message"), contextlib.suppress(NotFoundError):
            await self._es.update(
                index=self.index,
                id=hash_session_id(session_id),
                doc={"flash": message[:FLASH_LIMIT]},
                retry_on_conflict=_MAX_CAS_ATTEMPTS,
            )

    async def pop_flash(self, session_id: str) -> str | None:
        with es_errors("reading a flash message"):
            for _ in range(_MAX_CAS_ATTEMPTS):
                got = await self._get(session_id)
                if got is None or got[0].get("flash") is None:
                    return None
                source, seq_no, primary_term = got
                try:
                    await self._es.update(
                        index=self.index,
                        id=hash_session_id(session_id),
                        doc={"flash": None},
                        if_seq_no=seq_no,
                        if_primary_term=primary_term,
                    )
                except ConflictError:
                    continue
                except NotFoundError:
                    return None
                return str(source["flash"])
        raise StoreError(
            f"reading a flash message: no consistent write after {_MAX_CAS_ATTEMPTS} attempts"
        )

    async def _get(self, session_id: str) -> tuple[dict[str, Any], int, int] | None:
        try:
            got = await self._es.get(index=self.index, id=hash_session_id(session_id))
        except NotFoundError:
            return None
        return dict(got["_source"]), int(got["_seq_no"]), int(got["_primary_term"])

    async def _sweep(self, now: datetime) -> None:
        """Delete expired sessions, as SQLite does on each login.

        A search and a bulk delete rather than `_delete_by_query`, which needs the
        `reindex` module that a minimal node may lack. At most `_SWEEP_BATCH` per
        login, so a backlog drains over a few logins without slowing any one.
        Housekeeping only (`get` refuses an expired session by itself), so a failed
        sweep is logged and the login goes on.
        """
        try:
            found = await self._es.search(
                index=self.index,
                query={"range": {"expires_at": {"lte": ts(now)}}},
                size=_SWEEP_BATCH,
                source=False,
                track_total_hits=False,
            )
            ids = [hit["_id"] for hit in found["hits"]["hits"]]
            if ids:
                # Per-item failures (another replica deleted it first) need no action.
                await self._es.bulk(
                    operations=[{"delete": {"_index": self.index, "_id": i}} for i in ids]
                )
        except (ApiError, TransportError) as exc:
            log.warning("%s: sweeping expired sessions failed: %s", self.index, type(exc).__name__)


def _aware(value: datetime) -> datetime:
    parsed = parse_ts(ts(value))
    assert parsed is not None
    return parsed
