"""A failing HTTP connector never silently changes a decision.

The whole embedded pipeline (real store, audit chain, gateway, playbooks),
with the asset inventory served by an HttpConnector over real HTTP. When the
inventory API answers 500, the required `host_asset` step is ERROR evidence
and the host isolation that needs it escalates instead of executing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from soc_agent_connectors import HttpConnector, HttpConnectorConfig, capability

from soc_agent.models import Disposition, EvidenceStatus
from soc_agent.runtime.components import open_components
from tests.integration.conftest import Deployment, actions_by_key, only
from tests.integration.connectors.vendor_server import Reply, VendorServer

FIN_042 = "crowdstrike_ws-fin-042_known_malware.json"  # critical, malicious hash: score 100
QAKBOT = "9352480738ad28738e1657f72ee748f93470141f80de69705f5cbbcbf129f377"
ASSETS = "/api/v1/assets"


class AssetQuery(BaseModel):
    type: Literal["host", "user", "ip", "domain", "email", "cloud_resource"]
    value: str = Field(min_length=1)


class Asset(BaseModel):
    type: str
    value: str
    found: bool
    criticality: str = "medium"
    owner: str | None = None
    protected: bool = False


class AssetApi(HttpConnector):
    """A CMDB's REST API standing in for the asset inventory."""

    name = "asset_inventory"
    description = "CMDB REST API"
    config_model = HttpConnectorConfig

    @capability(kind="query", scopes=["assets:read"])
    async def lookup_asset(self, args: AssetQuery) -> Asset:
        """Criticality, owner and protection of one asset."""
        body = await self.get_json(ASSETS, params={"type": args.type, "name": args.value})
        items: list[dict[str, Any]] = body["result"]
        if not items:
            return Asset(type=args.type, value=args.value, found=False)
        item = items[0]
        return Asset(
            type=args.type,
            value=args.value,
            found=True,
            criticality=item["criticality"],
            owner=item.get("owner"),
            protected=item.get("protected", False),
        )


def _settings(deployment: Deployment, server: VendorServer) -> Any:
    settings = deployment.settings("endpoint-malware")
    settings.connectors["asset_inventory"] = {
        "base_url": server.url,
        "max_retries": 1,
        "backoff_base_seconds": 0.01,
        "timeout_seconds": 2,
    }
    return settings


async def test_vendor_500_escalates_the_action_that_required_it(
    deployment: Deployment, vendor_server: VendorServer
) -> None:
    vendor_server.route(
        "GET", ASSETS, Reply(500, {"error": {"message": "Internal error", "detail": None}})
    )
    settings = _settings(deployment, vendor_server)
    async with open_components(
        settings, clock=deployment.clock, connector_classes={"asset_inventory": AssetApi}
    ) as c:
        decision = only(await deployment.feed(c, FIN_042))
        acts = actions_by_key(decision)
        isolate = acts[("isolate_host", "ws-fin-042")]
        assert (isolate.disposition, isolate.rule) == (
            Disposition.ESCALATED,
            "investigation.missing_evidence",
        )
        assert "host_asset" in isolate.reason
        assert acts[("quarantine_file", QAKBOT)].disposition is Disposition.EXECUTED

        assert decision.investigation_id is not None
        investigation = await c.store.get_investigation(decision.investigation_id)
        assert investigation is not None
        evidence = investigation.by_step()["host_asset"]
        assert evidence.status is EvidenceStatus.ERROR
        assert evidence.error is not None
        assert "HTTP 500: Internal error (after 2 attempts)" in evidence.error

        # the investigation step, then the policy's own look-up of the target's facts
        calls = await c.audit.list(action_prefix="connector.lookup_asset")
        assert [(e.reason, e.outcome) for e in calls] == [
            ("investigation step host_asset", "error"),
            ("policy: target facts", "error"),
        ]
        assert (await c.audit.verify()).ok
        assert c.gateway.status()["asset_inventory"]["breaker"]["consecutive_failures"] == 4

    requests = vendor_server.calls("GET", ASSETS)
    assert len(requests) == 4  # two calls, each tried twice
    assert requests[0].query == {"type": ["host"], "name": ["ws-fin-042"]}
    assert deployment.journal_actions() == [("quarantine_file", QAKBOT)]


async def test_same_alert_with_a_healthy_vendor_executes(
    deployment: Deployment, vendor_server: VendorServer
) -> None:
    """The control: the same deployment acts when the inventory answers."""
    vendor_server.route(
        "GET",
        ASSETS,
        Reply(
            200,
            {"result": [{"name": "ws-fin-042", "criticality": "high", "owner": "finance"}]},
        ),
    )
    settings = _settings(deployment, vendor_server)
    async with open_components(
        settings, clock=deployment.clock, connector_classes={"asset_inventory": AssetApi}
    ) as c:
        decision = only(await deployment.feed(c, FIN_042))
        isolate = actions_by_key(decision)[("isolate_host", "ws-fin-042")]
        assert isolate.disposition is Disposition.EXECUTED
    assert ("isolate_host", "ws-fin-042") in deployment.journal_actions()
