"""Two API replicas on one Elasticsearch, over real HTTP: tokens and sessions are shared.

Both servers run `create_app` with `store_backend: elasticsearch` and the same
index prefix, as two API pods behind a load balancer would. Tokens are made
and revoked with the helpers `soc-agent tokens` calls, on the same backend.
Nothing may land in the SQLite store file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from soc_agent.api.credentials import create_token, list_tokens, revoke_token
from soc_agent.models import Role
from soc_agent.settings import Settings
from tests.integration.api.conftest import on_elasticsearch, running_server
from tests.integration.conftest import Deployment

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@dataclass
class Replicas:
    settings: Settings
    a: str
    b: str


@pytest.fixture
def replicas(deployment: Deployment, elasticsearch_url: str, es_prefix: str) -> Iterator[Replicas]:
    settings = on_elasticsearch(
        deployment.settings("endpoint-malware"), elasticsearch_url, es_prefix
    )
    with (
        running_server(settings, deployment.clock) as a,
        running_server(settings, deployment.clock) as b,
    ):
        yield Replicas(settings, a, b)


async def _me(client: httpx.AsyncClient, url: str, secret: str) -> httpx.Response:
    return await client.get(url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})


async def test_a_cli_token_authenticates_on_every_replica_until_revoked(
    replicas: Replicas,
) -> None:
    settings = replicas.settings
    alice = await create_token(settings, "alice", Role.ANALYST, actor="ops")
    ada = await create_token(settings, "ada", Role.ADMIN, actor="ops")
    async with httpx.AsyncClient(timeout=30) as client:
        for url in (replicas.a, replicas.b):
            r = await _me(client, url, alice)
            assert r.status_code == 200, r.text
            assert (r.json()["name"], r.json()["role"]) == ("alice", "analyst")

        await revoke_token(settings, "alice", actor="ops")
        for url in (replicas.b, replicas.a):  # the very next request, on either replica
            r = await _me(client, url, alice)
            assert r.status_code == 401
            assert r.json()["detail"] == "unknown or revoked token"

        # `soc-agent tokens list` runs its own event loop, as the CLI does.
        listed = await asyncio.to_thread(list_tokens, settings)
        assert [(t.name, t.role, t.active) for t in listed] == [
            ("ada", Role.ADMIN, True),
            ("alice", Role.ANALYST, False),
        ]
        # Creating and revoking are on the backend's audit chain, without the secrets.
        audit = await client.get(
            replicas.b + "/api/v1/audit",
            params={"action": "api.token", "limit": 50},
            headers={"Authorization": f"Bearer {ada}"},
        )
        assert audit.status_code == 200, audit.text
        trail = [(e["action"], e["subject"], e["actor"]) for e in audit.json()["items"]]
        assert trail == [
            ("api.token_revoke", "alice", "ops"),
            ("api.token_create", "ada", "ops"),
            ("api.token_create", "alice", "ops"),
        ]
        assert alice not in audit.text and ada not in audit.text
        verify = await client.get(
            replicas.a + "/api/v1/audit/verify", headers={"Authorization": f"Bearer {ada}"}
        )
        assert verify.json()["ok"] is True, verify.text
    assert not settings.store.exists(), "the Elasticsearch backend wrote the SQLite file"


async def _login(client: httpx.AsyncClient, url: str, secret: str) -> None:
    form = await client.get(url + "/login")
    r = await client.post(url + "/login", data={"token": secret, "csrf": _csrf(form.text)})
    assert r.status_code == 303, r.text


async def test_a_web_session_is_shared_by_the_replicas_and_logout_ends_it_on_both(
    replicas: Replicas,
) -> None:
    secret = await create_token(replicas.settings, "sam", Role.SENIOR, actor="ops")
    # One cookie jar across both ports: a browser behind a load balancer.
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as browser:
        await _login(browser, replicas.a, secret)
        page = await browser.get(replicas.b + "/proposals")
        assert page.status_code == 200, page.text
        assert 'id="whoami">sam<' in page.text
        assert (await browser.get(replicas.a + "/proposals")).status_code == 200

        out = await browser.post(replicas.b + "/logout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303
        # The cookie is gone from the jar now; replay it as a stolen one would be.
        cookie = page.request.headers["cookie"]
        for url in (replicas.a, replicas.b):
            again = await browser.get(url + "/proposals", headers={"Cookie": cookie})
            assert again.status_code == 303
            assert again.headers["location"] == "/login"
    assert not replicas.settings.store.exists()


async def test_revoking_the_token_ends_its_session_on_every_replica(replicas: Replicas) -> None:
    secret = await create_token(replicas.settings, "sue", Role.SENIOR, actor="ops")
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as browser:
        await _login(browser, replicas.b, secret)
        assert (await browser.get(replicas.a + "/proposals")).status_code == 200
        await revoke_token(replicas.settings, "sue", actor="ops")
        assert (await browser.get(replicas.a + "/proposals")).status_code == 303
        assert (await browser.get(replicas.b + "/proposals")).status_code == 303
    assert not replicas.settings.store.exists()
