"""The kill switch and a lowered autonomy bind an execution, not only the decision.

An operator engages the kill switch (or lowers the autonomy) while a decision is
on its way: its investigation still running (a model can take a minute), its
actions not yet carried out, or its process crashed before acting. Whatever
starts executing after that must obey the flag: the decision is made under the
flags as they are when it is made, and an execution still due is demoted to a
proposal (or, at level 1, a notification) unless the ledger shows its effect
already performed. Real SQLite store, audit chain, gateway and offline
connectors; the flag is set through the operator controls by a second
installation opened on the same store, as the CLI does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from soc_agent import failpoints
from soc_agent.models import AutonomyLevel, Disposition
from soc_agent.pipeline.controls import set_autonomy, set_kill_switch
from soc_agent.settings import Settings
from tests.integration.conftest import Deployment, actions_by_key, only
from tests.integration.test_pipeline import (
    FIN_042,
    QAKBOT,
    _assert_chain_ok,
    _decide_then_crash,
    _load_alert,
)

BOTH_EXECUTED = {("isolate_host", "ws-fin-042"), ("quarantine_file", QAKBOT)}


async def _engage(deployment: Deployment, settings: Settings, flag: str) -> None:
    """What an operator's `soc-agent kill-switch on` (or `autonomy set N`) does."""
    async with deployment.open(settings) as c:
        if flag == "kill-switch":
            await set_kill_switch(
                c.store, c.audit, settings.policy, True, actor="analyst:maria", at=c.clock()
            )
        else:
            level = AutonomyLevel(int(flag.removeprefix("autonomy-")))
            await set_autonomy(
                c.store,
                c.audit,
                settings.policy,
                level,
                actor="analyst:maria",
                reason="incident bridge",
                at=c.clock(),
            )


def _from_another_thread(
    deployment: Deployment, settings: Settings, flag: str
) -> Callable[[], None]:
    """A failpoint action: the operator's command runs while this process is mid-alert."""

    def action() -> None:
        deployment.clock.advance(seconds=5)  # the decision's flags are now 5 s old
        failed: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(_engage(deployment, settings, flag))
            except BaseException as exc:  # reported by the test, not lost in the thread
                failed.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        if failed:
            raise failed[0]

    return action


# (flag, the disposition and rule every due execution gets)
DEMOTIONS = [
    pytest.param("kill-switch", Disposition.PROPOSED, "guardrail.kill_switch", id="kill-switch"),
    pytest.param("autonomy-2", Disposition.PROPOSED, "autonomy.collaborator", id="collaborator"),
    pytest.param("autonomy-1", Disposition.NOTIFIED, "autonomy.operator", id="operator"),
]


@pytest.mark.parametrize(("flag", "disposition", "rule"), DEMOTIONS)
async def test_a_flag_set_after_the_decision_binds_its_executions(
    deployment: Deployment, flag: str, disposition: Disposition, rule: str
) -> None:
    settings = deployment.settings("endpoint-malware")
    failpoints.arm("decision.stored", 1, _from_another_thread(deployment, settings, flag))
    try:
        async with deployment.open(settings) as c:
            decision = only(await deployment.feed(c, FIN_042))
            assert {(a.action, a.target.value) for a in decision.actions} == BOTH_EXECUTED
            assert {(a.disposition, a.rule) for a in decision.actions} == {(disposition, rule)}
            assert all(
                a.outcome is not None or disposition is Disposition.NOTIFIED
                for a in decision.actions
            )
            assert deployment.journal() == []
            proposals = await c.store.list_proposals()
            assert len(proposals) == (2 if disposition is Disposition.PROPOSED else 0)
            stored = await c.store.get_decision(decision.id)
            assert stored == decision
            demoted = await c.audit.list(action_prefix="action.demote")
            assert sorted(e.subject for e in demoted) == sorted(
                a.idempotency_key for a in decision.actions
            )
            assert all(rule in (e.reason or "") for e in demoted)
            await _assert_chain_ok(c)
    finally:
        failpoints.disarm()


@pytest.mark.parametrize(
    ("flag", "disposition", "rule"),
    [
        pytest.param(
            "kill-switch", Disposition.PROPOSED, "guardrail.kill_switch", id="kill-switch"
        ),
        # score 100 is within edge_margin 50 of execute_at: level 4 escalates it, a rule
        # only the policy applies (a demotion leaves levels that execute alone)
        pytest.param(
            "autonomy-4", Disposition.ESCALATED, "autonomy.approver.edge_case", id="approver"
        ),
    ],
)
async def test_a_flag_set_during_the_investigation_is_decided_under(
    deployment: Deployment, flag: str, disposition: Disposition, rule: str
) -> None:
    """The investigation took longer than the flags stay fresh: the policy reads them
    again, so the decision itself says what the flag makes of it (nothing demoted)."""
    settings = deployment.settings("endpoint-malware", policy={"edge_margin": 50})
    failpoints.arm("evidence.gathered", 1, _from_another_thread(deployment, settings, flag))
    try:
        async with deployment.open(settings) as c:
            decision = only(await deployment.feed(c, FIN_042))
            assert {(a.disposition, a.rule) for a in decision.actions} == {(disposition, rule)}
            assert await c.audit.list(action_prefix="action.demote") == []
            await _assert_chain_ok(c)
    finally:
        failpoints.disarm()
    assert deployment.journal() == []


@pytest.mark.parametrize(("flag", "disposition", "rule"), DEMOTIONS)
async def test_a_flag_set_before_a_crashed_decision_is_finished_binds_it(
    deployment: Deployment, flag: str, disposition: Disposition, rule: str
) -> None:
    settings = deployment.settings("endpoint-malware")
    async with deployment.open(settings) as c:
        crashed = await _decide_then_crash(c, _load_alert(FIN_042))
        assert {a.disposition for a in crashed.actions} == {Disposition.EXECUTED}
    await _engage(deployment, settings, flag)

    deployment.clock.advance(seconds=30)  # the process restarts; the alert is redelivered
    async with deployment.open(settings) as c:
        (outcome,) = await deployment.feed(c, FIN_042)
        assert outcome.correlation == "redelivered"
        assert outcome.decision is not None and outcome.decision.id == crashed.id
        assert {(a.disposition, a.rule) for a in outcome.decision.actions} == {(disposition, rule)}
        assert len(await c.store.list_proposals()) == (
            2 if disposition is Disposition.PROPOSED else 0
        )
        await _assert_chain_ok(c)
    assert deployment.journal() == []


async def test_an_execution_the_ledger_shows_performed_is_reported_not_demoted(
    deployment: Deployment,
) -> None:
    """Crashed after one containment was carried out and recorded, before the decision
    said so: that one stands as executed; the other, still due, is proposed."""
    settings = deployment.settings("endpoint-malware")
    async with deployment.open(settings) as c:
        crashed = await _decide_then_crash(c, _load_alert(FIN_042))
        isolate = actions_by_key(crashed)[("isolate_host", "ws-fin-042")]
        done = await c.executor.execute(isolate, crashed.incident_id)
        assert done.status == "executed"
    await _engage(deployment, settings, "kill-switch")

    deployment.clock.advance(seconds=30)
    async with deployment.open(settings) as c:
        (outcome,) = await deployment.feed(c, FIN_042)
        acts = actions_by_key(outcome.decision)
        isolated = acts[("isolate_host", "ws-fin-042")]
        assert isolated.disposition is Disposition.EXECUTED
        assert (isolated.outcome or "").startswith("already_executed")
        quarantine = acts[("quarantine_file", QAKBOT)]
        assert (quarantine.disposition, quarantine.rule) == (
            Disposition.PROPOSED,
            "guardrail.kill_switch",
        )
        assert [p.request.action for p in await c.store.list_proposals()] == ["quarantine_file"]
        await _assert_chain_ok(c)
    assert deployment.journal_actions() == [("isolate_host", "ws-fin-042")]
