"""Every alert is answered after a crash, whatever state the crash left.

A handler dies (a failpoint raises out of it, as the process dying would stop
it) after the alert is stored, after the decision is stored, or after the
actions; then a suppressed duplicate of the alert arrives and the crashed
alert is delivered again. Both must be answered with the decision a
crash-free run makes, and every action must take effect once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from soc_agent import failpoints
from soc_agent.ingest import normalize
from soc_agent.models import Alert, Decision
from soc_agent.models.ids import decision_id
from soc_agent.runtime.components import Components
from tests.integration.conftest import ALERTS, Deployment

FIN_042 = "crowdstrike_ws-fin-042_known_malware.json"  # critical, malicious hash: executes


class _Died(BaseException):
    """Stands for the process dying: nothing after the failpoint runs."""


def _die() -> None:
    raise _Died


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    yield
    failpoints.disarm()


def _pair() -> tuple[Alert, Alert]:
    first = normalize(json.loads((ALERTS / FIN_042).read_text()))
    return first, first.model_copy(update={"id": first.id + ":resent-by-sensor"})


def _shape(decision: Decision) -> tuple[object, ...]:
    return (
        decision.id,
        decision.trigger_alert_id,
        decision.score,
        tuple(
            (a.action, a.target.key, a.disposition, a.rule, a.execution) for a in decision.actions
        ),
    )


async def _reference(deployment: Deployment, tmp_name: str) -> tuple[object, ...]:
    """The decision a crash-free run makes for the first alert."""
    settings = deployment.settings("endpoint-malware")
    settings = settings.model_copy(update={"store": deployment.store_path.with_name(tmp_name)})
    async with deployment.open(settings) as c:
        first, _ = _pair()
        outcome = await c.agent.handle(first)
        assert outcome.decision is not None
        return _shape(outcome.decision)


async def _crash(c: Components, alert: Alert, point: str) -> None:
    failpoints.arm(point, 1, _die)
    with pytest.raises(_Died):
        await c.agent.handle(alert)
    failpoints.disarm()


@pytest.mark.parametrize("point", ["alert.stored", "decision.stored", "actions.done"])
async def test_a_duplicate_and_the_redelivery_of_a_crashed_alert_are_answered(
    deployment: Deployment, point: str
) -> None:
    reference = await _reference(deployment, "reference.db")
    deployment.journal_path.unlink(missing_ok=True)
    async with deployment.open(deployment.settings("endpoint-malware")) as c:
        first, duplicate = _pair()
        await _crash(c, first, point)

        dup = await c.agent.handle(duplicate)
        assert dup.correlation == "duplicate"
        assert dup.decision is not None, "a suppressed duplicate must be answered"
        assert _shape(dup.decision) == reference
        assert dup.decision.id == decision_id(dup.incident.id, [first.id])

        again = await c.agent.handle(first)
        assert again.correlation == "redelivered"
        assert again.decision is not None and _shape(again.decision) == reference

    keys = [e["idempotency_key"] for e in deployment.journal()]
    assert keys and len(keys) == len(set(keys)), "every action takes effect once"


async def test_a_suppressed_duplicate_delivered_again_is_answered_as_before(
    deployment: Deployment,
) -> None:
    """A worker killed before committing a duplicate's record: its redelivery gets the same
    answer a crash-free run published, `duplicate` with the incident's decision."""
    async with deployment.open(deployment.settings("endpoint-malware")) as c:
        first, duplicate = _pair()
        decided = await c.agent.handle(first)
        dup = await c.agent.handle(duplicate)
        again = await c.agent.handle(duplicate)
    assert dup.correlation == again.correlation == "duplicate"
    assert dup.decision is not None and again.decision is not None
    assert again.decision.id == dup.decision.id == decided.decision.id
    assert duplicate.id not in again.decision.alert_ids
