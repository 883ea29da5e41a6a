"""API fixtures: a real uvicorn server on a loopback port over a store the real pipeline filled.

The pipeline (built by `open_components`, fixture playbooks and connector data)
queues two proposals for one high-severity malware incident at autonomy level
2: `isolate_host ws-eng-007` (high risk: a senior's, and two approvers under
four-eyes) and `quarantine_file <hash>` (medium risk: any analyst). Tokens for
every role are created with the real token store; the server runs the app
built by `create_app` with the test's clock, in a thread, on its own socket.

`es_prefix` gives a test its own Elasticsearch index prefix on the session's
real node (deleted afterwards); `on_elasticsearch` points settings at it.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from soc_agent.api.app import create_app
from soc_agent.api.credentials.tokens_sqlite import SQLiteTokenStore
from soc_agent.models import Proposal, Role
from soc_agent.settings import Settings
from soc_agent.store import SQLiteStore
from soc_agent.store.config import ElasticsearchConfig
from tests.conftest import Clock
from tests.infra.fixtures import elasticsearch_url
from tests.integration.conftest import Deployment

__all__ = [
    "ALERT",
    "BEACON",
    "TOKENS",
    "Api",
    "elasticsearch_url",
    "free_port",
    "on_elasticsearch",
    "open_api",
    "running_server",
]

ALERT = "crowdstrike_ws-eng-007_known_malware_high.json"
BEACON = "63599751f415c860417babb20cb438fdedd55411f2cfcd2ea6c186ed3cf3b91c"

# name -> role; names are the analyst identities the audit log records.
TOKENS: dict[str, Role] = {
    "vic": Role.VIEWER,
    "alice": Role.ANALYST,
    "amy": Role.ANALYST,
    "andy": Role.ANALYST,
    "sam": Role.SENIOR,
    "sue": Role.SENIOR,
    "ada": Role.ADMIN,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(settings: Settings, clock: Clock | None = None) -> Iterator[str]:
    """Serve `create_app(settings)` on a free 127.0.0.1 port in a thread, until the block ends.

    (uvicorn binds the port itself: a socket handed over pre-bound showed a
    40 ms delayed-ACK stall per request here.)
    """
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, clock=clock),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API server did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class Api:
    """The running server, its tokens, and the deployment behind it."""

    url: str
    tokens: dict[str, str]
    deployment: Deployment
    settings: Settings
    client: httpx.AsyncClient

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, path: str, who: str | None = "vic", **kw: Any) -> httpx.Response:
        headers = self.auth(who) if who else {}
        return await self.client.get(self.url + path, headers=headers, **kw)

    async def post(self, path: str, who: str | None, json: Any = None, **kw: Any) -> httpx.Response:
        headers = self.auth(who) if who else {}
        return await self.client.post(self.url + path, headers=headers, json=json, **kw)

    async def put(self, path: str, who: str | None, json: Any = None) -> httpx.Response:
        headers = self.auth(who) if who else {}
        return await self.client.put(self.url + path, headers=headers, json=json)

    async def proposal(self, action: str) -> Proposal:
        store = SQLiteStore(self.settings.store)
        try:
            (found,) = [p for p in await store.list_proposals() if p.request.action == action]
            return found
        finally:
            store.close()

    async def audit(self, **query: Any) -> list[dict[str, Any]]:
        r = await self.get("/api/v1/audit", params={"limit": 200, **query})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def seed_tokens(settings: Settings) -> dict[str, str]:
    tokens = SQLiteTokenStore(settings.store)
    try:
        return {name: await tokens.create(name, role, Clock().now) for name, role in TOKENS.items()}
    finally:
        tokens.close()


async def open_api(
    deployment: Deployment, *, api: dict[str, Any] | None = None, **policy: Any
) -> tuple[Settings, dict[str, str]]:
    """Fill the store with the real pipeline and create the tokens; returns settings."""
    settings = deployment.settings(
        "endpoint-malware",
        policy={"agent_autonomy": 2, "four_eyes_min_risk": "high", **policy},
    )
    if api is not None:
        settings = settings.model_copy(update={"api": settings.api.model_validate(api)})
    async with deployment.open(settings) as c:
        await deployment.feed(c, ALERT)
    return settings, await seed_tokens(settings)


@pytest.fixture
async def api(deployment: Deployment) -> AsyncIterator[Api]:
    settings, tokens = await open_api(deployment)
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=30) as client:
            yield Api(url, tokens, deployment, settings, client)


@pytest.fixture
def es_prefix(elasticsearch_url: str) -> Iterator[str]:
    """An index prefix of this test's own; its indices are deleted afterwards.

    Synchronous, so parametrised async fixtures can ask for it only on their
    Elasticsearch leg (`request.getfixturevalue`).
    """
    prefix = f"soc-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    with Elasticsearch(elasticsearch_url, request_timeout=30) as client:
        # Wildcard deletes are refused (destructive_requires_name): name each index.
        names = list(client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names:
            client.indices.delete(index=",".join(names))


def on_elasticsearch(settings: Settings, url: str, prefix: str) -> Settings:
    """`settings` with state (and so the API's tokens and sessions) in `prefix-*` at `url`."""
    # No replicas on the single test node; a short refresh keeps `wait_for` writes quick.
    config = ElasticsearchConfig(
        hosts=[url], index_prefix=prefix, number_of_replicas=0, refresh_interval="100ms"
    )
    return settings.model_copy(
        update={
            "store_backend": "elasticsearch",
            "elasticsearch": config,
            "audit_key": SecretStr("the-key-every-worker-shares-0123"),
        }
    )
