"""`audit_queries`: an investigation's read-only queries as one audit entry, or one each.

The summary keeps every call (connector, capability, latency, why) under the
investigation's id, the policy's look-ups of the action targets included; a
query that failed or was denied is still its own entry, and the chain verifies
either way.
"""

from __future__ import annotations

from collections import Counter

from soc_agent.models import EvidenceStatus
from tests.integration.conftest import Deployment

ALERT = "crowdstrike_ws-eng-007_known_malware_high.json"


async def test_summary_is_one_entry_per_investigation_listing_every_query(
    deployment: Deployment,
) -> None:
    # No grant for threat intel: that step is denied, and a denial stays its own entry.
    settings = deployment.settings("endpoint-malware", grants={"threat_intel": []})
    assert settings.audit_queries == "summary"
    async with deployment.open(settings) as c:
        (outcome,) = await deployment.feed(c, ALERT)
        investigation = await c.store.get_investigation(outcome.decision.investigation_id or "")
        assert investigation is not None
        ok = [e for e in investigation.evidence if e.status is EvidenceStatus.OK]
        assert ok and len(ok) < len(investigation.evidence)
        entries = await c.audit.list(action_prefix="connector.")
        kinds = Counter(e.action for e in entries)
        assert kinds["connector.queries"] == 1
        assert kinds["connector.denied"] >= 1
        (summary,) = [e for e in entries if e.action == "connector.queries"]
        assert summary.subject == summary.evidence_ref == investigation.id
        calls = summary.details["calls"]
        steps = [call for call in calls if call["reason"] != "policy: target facts"]
        assert sorted(call["capability"] for call in steps) == sorted(e.capability for e in ok)
        targets = [call for call in calls if call["reason"] == "policy: target facts"]
        assert [call["capability"] for call in targets] == ["lookup_asset"]
        assert kinds["connector.lookup_asset"] == 0  # not also audited on its own
        assert (await c.audit.verify()).ok


async def test_each_is_one_entry_per_query(deployment: Deployment) -> None:
    settings = deployment.settings("endpoint-malware")
    settings = settings.model_copy(update={"audit_queries": "each"})
    async with deployment.open(settings) as c:
        (outcome,) = await deployment.feed(c, ALERT)
        investigation = await c.store.get_investigation(outcome.decision.investigation_id or "")
        assert investigation is not None
        entries = await c.audit.list(action_prefix="connector.")
        assert not [e for e in entries if e.action == "connector.queries"]
        queried = [e for e in entries if e.evidence_ref == investigation.id]
        # One entry per call: a for_each step makes several calls for one piece of evidence.
        assert len(queried) >= len(investigation.evidence) > 0
