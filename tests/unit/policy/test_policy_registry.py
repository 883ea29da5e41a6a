"""Every rule id a decision can carry is in the PolicyRule registry, and every entry is used.

Dashboards, audits and playbook tests key on rule ids, so a disposition made
with an id that is not registered (or made outside the policy) is a bug.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
from pathlib import Path

from soc_agent.models import ActionStatus, AutonomyLevel, Disposition, RiskTier, RunMode
from soc_agent.policy import PolicyConfig, PolicyRule, decide, demote_over_budget
from tests.unit.policy.conftest import build_input, executed_request

_ROOT = Path(__file__).resolve().parents[3] / "soc_agent"
_RULE_ID = re.compile(r"^(config|ledger|threshold|autonomy|investigation|guardrail)\.[a-z_.]+$")


def _rules_reached() -> set[str]:
    """Sweep the policy's inputs and collect every rule and intended rule it returns."""
    seen: set[str] = set()
    for mode, level, score, kill, sample, ledger in itertools.product(
        RunMode,
        AutonomyLevel,
        (10.0, 55.0, 75.0, 89.0, 97.0),
        (False, True),
        (0.0, 1.0),
        (None, ActionStatus.EXECUTED, ActionStatus.FAILED),
    ):
        config = PolicyConfig(
            mode=mode,
            agent_autonomy=level,
            kill_switch=kill,
            review_sample_rate=sample,
            deny_actions=["delete_user"],
            four_eyes_actions=["disable_user"],
            edge_margin=10,
        )
        variants = [
            {},
            {"notify_at": 50.0},
            {"action": "delete_user"},
            {"action": "disable_user"},
            {"granted": False, "missing_scopes": ("hosts:write",)},
            {"target_protected": True},
            {"reversible": False},
            {"rollback": None},
            {"executions_in_window": 10_000},
            {"concluded": False},
            {"requires": ("host_asset",), "missing_evidence": ("host_asset",)},
            {"risk": RiskTier.HIGH},
        ]
        for variant in variants:
            inp = dataclasses.replace(build_input(score, **variant), ledger_status=ledger)
            partial = dataclasses.replace(inp, score_bound=100.0, unevaluated=("r (why)",))
            modelled = dataclasses.replace(inp, model_points=20.0)
            injected = dataclasses.replace(inp, injection=("alert.title: role marker",))
            for candidate in (
                inp,
                partial,
                modelled,
                injected,
                dataclasses.replace(inp, facts=None),
            ):
                verdict = decide(candidate, config)
                seen.add(verdict.rule)
                if verdict.intended_rule is not None:
                    seen.add(verdict.intended_rule)
    return seen


def test_every_rule_the_policy_returns_is_registered_and_every_entry_is_reachable() -> None:
    reached = _rules_reached()
    registered = {rule.value for rule in PolicyRule}
    assert reached <= registered, reached - registered
    assert registered <= reached, f"registered but never produced: {registered - reached}"


def test_the_over_budget_demotion_proposes_under_a_registered_rule() -> None:
    request = executed_request()
    demoted = demote_over_budget(request, "budget of 5 isolate_host per window reached")
    assert demoted.disposition is Disposition.PROPOSED
    assert demoted.rule in {rule.value for rule in PolicyRule}
    assert demoted.guardrails == [PolicyRule.BLAST_RADIUS.value]
    assert "budget of 5" in demoted.reason


def test_no_rule_id_is_spelled_outside_the_registry() -> None:
    """A disposition made outside the policy would name its rule as a string literal."""
    offenders: list[str] = []
    for path in _ROOT.rglob("*.py"):
        if path.name == "rules.py" and path.parent.name == "policy":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _RULE_ID.match(node.value)
            ):
                offenders.append(f"{path.relative_to(_ROOT.parent)}:{node.lineno} {node.value!r}")
    assert offenders == []
