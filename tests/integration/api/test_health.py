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
            assert ready.json()["status"] == "ready" and ready.json()["audit_entries"] > 0
