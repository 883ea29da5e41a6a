"""Liveness and readiness endpoints used by the Helm chart's probes."""

from __future__ import annotations

import httpx

from tests.integration.api.conftest import open_api, running_server
from tests.integration.conftest import Deployment


async def test_health_and_readiness_need_no_token(deployment: Deployment) -> None:
    settings, _ = await open_api(deployment)
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            # Without a login it says ready, nothing about what the agent holds.
            assert ready.json() == {"status": "ready"}


async def test_a_huge_offset_is_a_clear_422_not_a_500(deployment: Deployment) -> None:
    settings, tokens = await open_api(deployment)
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            headers = {"Authorization": f"Bearer {tokens['vic']}"}
            for path in ("/api/v1/proposals", "/api/v1/incidents", "/api/v1/decisions"):
                r = await client.get(path, params={"offset": 10**20}, headers=headers)
                assert r.status_code == 422, (path, r.text)
                assert "offset" in r.text
