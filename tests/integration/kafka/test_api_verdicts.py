"""The analyst API publishes each verdict to the approvals topic (distributed runtime)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from soc_agent.errors import ConfigError
from soc_agent.models import Role
from soc_agent.runtime.kafka.signed_verdicts import UnauthenticatedVerdict, verify_verdict
from tests.integration.api.conftest import open_api, running_server
from tests.integration.conftest import Deployment
from tests.integration.kafka.conftest import KafkaEnv

KEY = "approvals-signing-key-shared-by-api-and-workers"


async def test_api_verdicts_are_published_to_the_approvals_topic(
    deployment: Deployment, kafka: KafkaEnv
) -> None:
    await kafka.create_topics(partitions=1)
    settings, tokens = await open_api(deployment, api={"publish_approvals": True})
    settings = settings.model_copy(update={"kafka": kafka.config(approvals_key=KEY)})
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            listed = await client.get(
                "/api/v1/proposals", headers={"Authorization": f"Bearer {tokens['sam']}"}
            )
            pending = listed.json()["items"]
            assert len(pending) >= 2
            first, second = pending[0]["id"], pending[1]["id"]
            approved = await client.post(
                f"/api/v1/proposals/{first}/approve",
                json={"comment": "confirmed on the EDR console"},
                headers={"Authorization": f"Bearer {tokens['sam']}"},
            )
            rejected = await client.post(
                f"/api/v1/proposals/{second}/reject",
                json={},
                headers={"Authorization": f"Bearer {tokens['sam']}"},
            )
            assert approved.status_code == 200 and rejected.status_code == 200
            refused = await client.post(
                f"/api/v1/proposals/{second}/approve",
                json={},
                headers={"Authorization": f"Bearer {tokens['sam']}"},
            )
            assert refused.status_code == 409  # no verdict is published for a refusal
    records = await kafka.read_all(kafka.topics.approvals)
    verdicts = [json.loads(r.value) for r in records]
    for record in records:  # what a worker accepts: signed with the shared key, recent
        signed = verify_verdict(
            record.value, [KEY.encode()], now=datetime.now(UTC), max_age=timedelta(minutes=5)
        )
        assert (signed.analyst, signed.role) == ("token:sam", Role.SENIOR)
    with pytest.raises(UnauthenticatedVerdict, match="signature"):
        verify_verdict(
            records[0].value, [b"x" * 32], now=datetime.now(UTC), max_age=timedelta(minutes=5)
        )
    assert [(v["proposal_id"], v["verdict"]) for v in verdicts] == [
        (first, "approve"),
        (second, "reject"),
    ]
    assert verdicts[0]["analyst"] == "token:sam"
    assert verdicts[0]["comment"] == "confirmed on the EDR console"
    assert [r.key.decode() for r in records] == [first, second]


def test_publishing_verdicts_needs_a_signing_key(kafka: KafkaEnv) -> None:
    from soc_agent.settings import load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings(api={"publish_approvals": True}, kafka=kafka.config())
    assert caught.value.key == "kafka.approvals_key"
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings(kafka={"approvals_key": "too-short"})


async def test_incident_closings_are_exported_signed_to_the_verdicts_topic(
    deployment: Deployment, kafka: KafkaEnv
) -> None:
    await kafka.create_topics(partitions=1)
    settings, tokens = await open_api(deployment, api={"publish_approvals": True})
    settings = settings.model_copy(update={"kafka": kafka.config(approvals_key=KEY)})
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            auth = {"Authorization": f"Bearer {tokens['sam']}"}
            incident = (await client.get("/api/v1/incidents", headers=auth)).json()["items"][0]
            closed = await client.post(
                f"/api/v1/incidents/{incident['id']}/close",
                json={"verdict": "false_positive", "reason": "pen test, ticket CHG-1042"},
                headers=auth,
            )
            assert closed.status_code == 200, closed.text
    (record,) = await kafka.read_all(kafka.topics.verdicts)
    assert record.key == incident["id"].encode()
    exported = json.loads(record.value)
    signature = exported.pop("signature")
    canonical = json.dumps(exported, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    expected = hmac.new(KEY.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    assert signature == f"hmac-sha256:{expected}"
    assert (exported["verdict"], exported["closed_by"]["name"]) == ("false_positive", "token:sam")
    assert exported["incident_id"] == incident["id"]
