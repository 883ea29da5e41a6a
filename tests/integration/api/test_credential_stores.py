"""Token and session stores on both backends: SQLite (the reference) and a real Elasticsearch.

Every behaviour runs on both (`creds` is parametrised), so a difference between
them is a failure. "Replicas" are two store instances over the same data: two
connections to one SQLite file, or two Elasticsearch clients on one index
prefix, as two API servers on two machines would be.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch, BadRequestError

from soc_agent.api.credentials.sessions_base import SessionStore
from soc_agent.api.credentials.sessions_elasticsearch import ElasticsearchSessionStore
from soc_agent.api.credentials.sessions_sqlite import SQLiteSessionStore
from soc_agent.api.credentials.tokens_base import TOKEN_PREFIX, TokenError, TokenStore
from soc_agent.api.credentials.tokens_elasticsearch import ElasticsearchTokenStore
from soc_agent.api.credentials.tokens_sqlite import SQLiteTokenStore
from soc_agent.api.identity import Principal
from soc_agent.models import Role
from tests.conftest import Clock

TTL = timedelta(hours=8)
ALICE = Principal(name="alice", role=Role.ANALYST, source="token", token_name="alice")


@dataclass
class Replica:
    tokens: TokenStore
    sessions: SessionStore


@dataclass
class Creds:
    """Two replicas over one backend, plus what the backend holds at rest."""

    kind: str
    a: Replica
    b: Replica
    raw: Callable[[], Awaitable[str]]  # everything stored, as text
    session_keys: Callable[[], Awaitable[set[str]]]  # the stored sessions' keys
    settle: Callable[[], Awaitable[None]]  # make searches see the latest writes


@pytest.fixture(params=["sqlite", "elasticsearch"])
async def creds(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Creds]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            db = tmp_path / "soc-agent.db"
            replicas = []
            for _ in range(2):
                tokens, sessions = SQLiteTokenStore(db), SQLiteSessionStore(db)
                stack.callback(tokens.close)
                stack.callback(sessions.close)
                replicas.append(Replica(tokens, sessions))

            def read_files() -> str:
                # The database, its WAL and shared-memory files: everything at rest.
                return b"".join(p.read_bytes() for p in tmp_path.iterdir()).decode("latin-1")

            async def raw_sqlite() -> str:
                return await asyncio.to_thread(read_files)

            async def keys_sqlite() -> set[str]:
                with closing(sqlite3.connect(db)) as conn:
                    return {r[0] for r in conn.execute("SELECT id_hash FROM api_sessions")}

            async def no_op() -> None:
                return None

            yield Creds("sqlite", replicas[0], replicas[1], raw_sqlite, keys_sqlite, no_op)
            return

        url: str = request.getfixturevalue("elasticsearch_url")
        prefix: str = request.getfixturevalue("es_prefix")
        replicas = []
        clients = []
        for _ in range(2):
            client = AsyncElasticsearch(url, request_timeout=30)
            stack.push_async_callback(client.close)
            clients.append(client)
            es_tokens = ElasticsearchTokenStore(
                client, index=f"{prefix}-api-tokens", number_of_replicas=0, refresh_interval="100ms"
            )
            es_sessions = ElasticsearchSessionStore(
                client,
                index=f"{prefix}-api-sessions",
                number_of_replicas=0,
                refresh_interval="100ms",
            )
            # Both replicas ensure the indices, as every API server does at start-up.
            await es_tokens.ensure_index()
            await es_sessions.ensure_index()
            replicas.append(Replica(es_tokens, es_sessions))
        indices = f"{prefix}-api-tokens,{prefix}-api-sessions"

        async def settle() -> None:
            await clients[0].indices.refresh(index=indices)

        async def raw_es() -> str:
            await settle()
            found = await clients[0].search(index=indices, size=1000, query={"match_all": {}})
            return json.dumps(found.body["hits"]["hits"])

        async def keys_es() -> set[str]:
            await settle()
            found = await clients[0].search(index=f"{prefix}-api-sessions", size=1000)
            return {hit["_id"] for hit in found.body["hits"]["hits"]}

        yield Creds("elasticsearch", replicas[0], replicas[1], raw_es, keys_es, settle)


# -- tokens ------------------------------------------------------------------------------


async def test_a_created_token_authenticates_on_every_replica(creds: Creds, clock: Clock) -> None:
    secret = await creds.a.tokens.create("alice", Role.ANALYST, clock.now)
    assert secret.startswith(TOKEN_PREFIX) and len(secret) > 40
    for replica in (creds.a, creds.b):
        record = await replica.tokens.lookup(secret, clock.now)
        assert record is not None
        assert (record.name, record.role, record.active) == ("alice", Role.ANALYST, True)
        assert record.created_at == clock.now
        assert await replica.tokens.is_active("alice")
    assert not await creds.b.tokens.is_active("bob")


@pytest.mark.parametrize(
    "secret",
    ["", "not-ours", TOKEN_PREFIX, TOKEN_PREFIX + "x" * 300, TOKEN_PREFIX + "guess"],
)
async def test_unknown_or_malformed_secrets_authenticate_nobody(
    creds: Creds, clock: Clock, secret: str
) -> None:
    await creds.a.tokens.create("alice", Role.ANALYST, clock.now)
    assert await creds.b.tokens.lookup(secret, clock.now) is None


async def test_revocation_is_seen_by_the_other_replica_on_the_next_request(
    creds: Creds, clock: Clock
) -> None:
    secret = await creds.a.tokens.create("sam", Role.SENIOR, clock.now)
    assert await creds.b.tokens.lookup(secret, clock.now) is not None
    await creds.a.tokens.revoke("sam", clock.now)
    assert await creds.b.tokens.lookup(secret, clock.now) is None
    assert not await creds.b.tokens.is_active("sam")
    with pytest.raises(TokenError, match="no active token named 'sam'"):
        await creds.b.tokens.revoke("sam", clock.now)
    with pytest.raises(TokenError, match="no active token named 'nobody'"):
        await creds.b.tokens.revoke("nobody", clock.now)


async def test_a_name_holds_one_active_token_and_a_revoked_name_can_be_reissued(
    creds: Creds, clock: Clock
) -> None:
    first = await creds.a.tokens.create("sam", Role.SENIOR, clock.now)
    with pytest.raises(TokenError, match="active token named 'sam' exists"):
        await creds.b.tokens.create("sam", Role.ADMIN, clock.now)
    with pytest.raises(TokenError, match="invalid token name"):
        await creds.a.tokens.create("bad name!", Role.VIEWER, clock.now)
    await creds.a.tokens.revoke("sam", clock.now)
    clock.advance(minutes=5)
    second = await creds.b.tokens.create("sam", Role.ADMIN, clock.now)
    assert await creds.a.tokens.lookup(first, clock.now) is None
    record = await creds.a.tokens.lookup(second, clock.now)
    assert record is not None and (record.role, record.created_at) == (Role.ADMIN, clock.now)
    (listed,) = await creds.a.tokens.records()
    assert (listed.name, listed.role, listed.active) == ("sam", Role.ADMIN, True)


async def test_racing_creators_on_two_replicas_leave_exactly_one_active_token(
    creds: Creds, clock: Clock
) -> None:
    attempts = [
        (creds.a if i % 2 else creds.b).tokens.create("race", Role.ANALYST, clock.now)
        for i in range(10)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    secrets = [r for r in results if isinstance(r, str)]
    assert len(secrets) == 1, results
    assert all(isinstance(r, TokenError) for r in results if not isinstance(r, str))
    assert await creds.b.tokens.lookup(secrets[0], clock.now) is not None
    assert [r.name for r in await creds.a.tokens.records()] == ["race"]


async def test_records_list_every_token_by_name_with_its_state(creds: Creds, clock: Clock) -> None:
    for name in ("zoe", "ada", "mia", "bob"):
        await creds.a.tokens.create(name, Role.VIEWER, clock.now)
    await creds.b.tokens.revoke("mia", clock.now)
    records = await creds.b.tokens.records()
    assert [(r.name, r.active) for r in records] == [
        ("ada", True),
        ("bob", True),
        ("mia", False),
        ("zoe", True),
    ]
    assert next(r for r in records if r.name == "mia").revoked_at == clock.now


async def test_use_is_recorded_at_most_once_a_minute(creds: Creds, clock: Clock) -> None:
    secret = await creds.a.tokens.create("alice", Role.ANALYST, clock.now)
    created = clock.now

    async def last_used() -> object:
        await creds.settle()
        (record,) = await creds.a.tokens.records()
        return record.last_used_at

    clock.advance(seconds=5)
    first = await creds.b.tokens.lookup(secret, clock.now)
    assert first is not None and first.last_used_at is None  # as read, before this use
    assert await last_used() == created + timedelta(seconds=5)
    clock.advance(seconds=50)
    await creds.a.tokens.lookup(secret, clock.now)
    assert await last_used() == created + timedelta(seconds=5)
    clock.advance(seconds=20)
    await creds.a.tokens.lookup(secret, clock.now)
    assert await last_used() == created + timedelta(seconds=75)


async def test_only_the_sha256_of_a_secret_is_stored(creds: Creds, clock: Clock) -> None:
    secrets = {name: await creds.a.tokens.create(name, Role.ANALYST, clock.now) for name in "xyz"}
    await creds.a.tokens.revoke("y", clock.now)
    secrets["y"] = await creds.a.tokens.create("y", Role.ANALYST, clock.now)
    stored = await creds.raw()
    for secret in secrets.values():
        assert secret not in stored
        assert secret[len(TOKEN_PREFIX) :] not in stored
        assert hashlib.sha256(secret.encode()).hexdigest() in stored


# -- sessions ----------------------------------------------------------------------------


async def test_a_session_opened_on_one_replica_is_valid_on_the_other(
    creds: Creds, clock: Clock
) -> None:
    session_id = await creds.a.sessions.create(ALICE, TTL, clock.now)
    session = await creds.b.sessions.get(session_id, clock.now)
    assert session is not None
    assert session.principal == Principal(
        name="alice",
        role=Role.ANALYST,
        source="token",
        token_name="alice",
        expires_at=clock.now + TTL,
    )
    assert session.expires_at == clock.now + TTL
    again = await creds.a.sessions.get(session_id, clock.now)
    assert again is not None and again.csrf == session.csrf and len(session.csrf) > 30
    other = await creds.b.sessions.create(ALICE, TTL, clock.now)
    assert other != session_id
    other_session = await creds.a.sessions.get(other, clock.now)
    assert other_session is not None and other_session.csrf != session.csrf


async def test_logout_on_one_replica_ends_the_session_on_the_other(
    creds: Creds, clock: Clock
) -> None:
    session_id = await creds.a.sessions.create(ALICE, TTL, clock.now)
    assert await creds.b.sessions.get(session_id, clock.now) is not None
    await creds.b.sessions.delete(session_id)
    assert await creds.a.sessions.get(session_id, clock.now) is None
    await creds.a.sessions.delete(session_id)  # ending an ended session is harmless


async def test_a_session_expires_and_never_outlives_its_credential(
    creds: Creds, clock: Clock
) -> None:
    session_id = await creds.a.sessions.create(ALICE, TTL, clock.now)
    assert await creds.b.sessions.get(session_id, clock.now + TTL - timedelta(seconds=1))
    assert await creds.b.sessions.get(session_id, clock.now + TTL) is None
    # An expired session is removed when seen, not merely hidden.
    assert await creds.a.sessions.get(session_id, clock.now) is None

    short = Principal(
        name="oidc-user",
        role=Role.VIEWER,
        source="oidc",
        expires_at=clock.now + timedelta(minutes=5),
    )
    capped = await creds.a.sessions.create(short, TTL, clock.now)
    session = await creds.b.sessions.get(capped, clock.now)
    assert session is not None and session.expires_at == clock.now + timedelta(minutes=5)
    assert session.principal.token_name is None
    assert await creds.b.sessions.get(capped, clock.now + timedelta(minutes=5)) is None


async def test_expired_sessions_are_swept_at_the_next_login(creds: Creds, clock: Clock) -> None:
    old = await creds.a.sessions.create(ALICE, timedelta(minutes=1), clock.now)
    assert await creds.session_keys() == {hashlib.sha256(old.encode()).hexdigest()}
    clock.advance(minutes=2)
    new = await creds.b.sessions.create(ALICE, TTL, clock.now)
    assert await creds.session_keys() == {hashlib.sha256(new.encode()).hexdigest()}


async def test_a_flash_message_is_shown_once_even_with_replicas_racing(
    creds: Creds, clock: Clock
) -> None:
    session_id = await creds.a.sessions.create(ALICE, TTL, clock.now)
    assert await creds.b.sessions.pop_flash(session_id) is None
    await creds.a.sessions.set_flash(session_id, "approved " + "x" * 2000)
    pops = await asyncio.gather(
        *[(creds.a if i % 2 else creds.b).sessions.pop_flash(session_id) for i in range(8)]
    )
    shown = [p for p in pops if p is not None]
    assert len(shown) == 1 and shown[0].startswith("approved ") and len(shown[0]) == 1000
    # The session itself is untouched by its flash coming and going.
    assert await creds.a.sessions.get(session_id, clock.now) is not None
    await creds.b.sessions.set_flash("no-such-session", "lost")
    assert await creds.b.sessions.pop_flash("no-such-session") is None


@pytest.mark.parametrize("session_id", ["", "x" * 101, "never-issued"])
async def test_unknown_or_malformed_session_ids_find_nothing(
    creds: Creds, clock: Clock, session_id: str
) -> None:
    await creds.a.sessions.create(ALICE, TTL, clock.now)
    assert await creds.b.sessions.get(session_id, clock.now) is None


async def test_only_the_sha256_of_a_session_id_is_stored(creds: Creds, clock: Clock) -> None:
    ids = [await creds.a.sessions.create(ALICE, TTL, clock.now) for _ in range(3)]
    assert await creds.session_keys() == {hashlib.sha256(i.encode()).hexdigest() for i in ids}
    stored = await creds.raw()
    for session_id in ids:
        assert session_id not in stored
        assert hashlib.sha256(session_id.encode()).hexdigest() in stored


# -- Elasticsearch only ------------------------------------------------------------------


async def test_sessions_are_read_in_real_time_not_by_search(
    elasticsearch_url: str, es_prefix: str, clock: Clock
) -> None:
    """With refreshes 30 s apart, only a GET sees a session written a moment ago."""
    async with (
        AsyncElasticsearch(elasticsearch_url, request_timeout=30) as one,
        AsyncElasticsearch(elasticsearch_url, request_timeout=30) as two,
    ):
        stores = [
            ElasticsearchSessionStore(
                client,
                index=f"{es_prefix}-api-sessions",
                number_of_replicas=0,
                refresh_interval="30s",
            )
            for client in (one, two)
        ]
        for store in stores:
            await store.ensure_index()
        session_id = await stores[0].create(ALICE, TTL, clock.now)
        assert await stores[1].get(session_id, clock.now) is not None
        await stores[0].set_flash(session_id, "done")
        assert await stores[1].pop_flash(session_id) == "done"
        await stores[1].delete(session_id)
        assert await stores[0].get(session_id, clock.now) is None


async def test_the_indices_have_strict_mappings_one_shard_and_the_configured_replicas(
    elasticsearch_url: str, es_prefix: str
) -> None:
    async with AsyncElasticsearch(elasticsearch_url, request_timeout=30) as client:
        tokens = ElasticsearchTokenStore(
            client, index=f"{es_prefix}-api-tokens", number_of_replicas=0
        )
        sessions = ElasticsearchSessionStore(
            client, index=f"{es_prefix}-api-sessions", number_of_replicas=0
        )
        for _ in range(2):  # idempotent: every replica ensures them at start-up
            await tokens.ensure_index()
            await sessions.ensure_index()
        for index in (tokens.index, sessions.index):
            got = await client.indices.get_settings(index=index)
            settings = got[index]["settings"]["index"]
            assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("1", "0")
            mapping = (await client.indices.get_mapping(index=index))[index]["mappings"]
            assert mapping["dynamic"] == "strict"
        for index in (tokens.index, sessions.index):
            with pytest.raises(BadRequestError, match="strict_dynamic_mapping_exception"):
                await client.index(index=index, document={"secret": "x"})
