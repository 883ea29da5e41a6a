"""Alert content cannot force a quiet decision on partial evidence.

The outside review padded the impossible-travel sample with 15 extra source IPs:
the playbook's per-IP lookup spent the step budget before the sign-in history
ran, the score fell from 90 to 45 and revoke_sessions was only notified. Now a
for_each step looks up at most `max_items` items (the rest is recorded), the
padding is a finding, and every action the decision could have reached had
the unevaluated rules fired is escalated to a human instead of quietly dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

from soc_agent.ingest import normalize
from soc_agent.models import Disposition, EntityType, Evidence
from soc_agent.pipeline.agent import AlertOutcome
from soc_agent.runtime.components import open_components
from soc_agent.runtime.embedded import run_embedded
from soc_agent.settings import Settings, load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "alerts"


def _padded(extra: int) -> dict[str, object]:
    doc = json.loads((SAMPLE / "ms_graph_impossible_travel.json").read_text())
    evidence = list(doc["evidence"])  # type: ignore[call-overload]
    # The attacker's padding comes first, so a capped lookup sees only padding.
    padding = [
        {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": f"198.51.100.{i}"}
        for i in range(1, extra + 1)
    ]
    doc["evidence"] = [evidence[0], *padding, *evidence[1:]]
    return doc


async def _decide(tmp_path: Path, doc: dict[str, object]) -> tuple[object, ...]:
    settings = load_settings(store=tmp_path / "soc-agent.db")
    async with open_components(settings) as c:
        outcome = await c.agent.handle(normalize(doc))
        investigation = await c.store.get_investigation(outcome.decision.investigation_id or "")
    return outcome.decision, investigation


async def test_padding_the_alert_escalates_instead_of_quietly_notifying(tmp_path: Path) -> None:
    clean, _ = await _decide(tmp_path / "clean", _padded(0))
    padded, investigation = await _decide(tmp_path / "padded", _padded(15))

    clean_revoke = {a.action: a for a in clean.actions}["revoke_sessions"]  # type: ignore[attr-defined]
    assert clean_revoke.disposition is Disposition.PROPOSED

    revoke = {a.action: a for a in padded.actions}["revoke_sessions"]  # type: ignore[attr-defined]
    assert revoke.disposition in (Disposition.ESCALATED, Disposition.PROPOSED), revoke
    assert revoke.disposition is not Disposition.NOTIFIED
    if revoke.disposition is Disposition.ESCALATED:
        assert revoke.rule in ("investigation.unevaluated", "investigation.incomplete")
        assert "ip_intel" in revoke.reason or "not conclude" in revoke.reason

    # The sign-in history still ran: the fan-out no longer spends the whole budget.
    steps = {e.step: e for e in investigation.evidence}  # type: ignore[attr-defined]
    assert steps["signins"].status.value == "ok"
    intel = steps["ip_intel"]
    assert intel.overflow == 17 - 10, "the items not looked up are recorded"
    assert len(intel.result) == 10
    findings = [b for b in padded.breakdown if not b.evaluated]  # type: ignore[attr-defined]
    assert any("looked up 10 of 17" in b.reason for b in findings), findings


COSTLY = """\
name: costly-pairs
priority: 10000
match: alert.format == "suricata"
steps: []
score:
  base: 40
  rules:
    - id: repeated-pair
      # Nested over data the alert controls: fine on a normal alert, not on a padded one.
      when: >
        alert.original.http_hosts.exists(a,
          alert.original.http_hosts.exists(b, a != b && a + b == "evil.example"))
      points: 50
      reason: two hosts form the known pair
respond:
  - id: block
    action: block_ip
    target: {type: ip, value: "${alert.ips[0]}"}
    execute_at: 80
    propose_at: 60
    notify_at: 20
"""


async def test_a_costly_rule_on_padded_data_is_not_run_and_escalates(tmp_path: Path) -> None:
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "costly.yaml").write_text(COSTLY)
    line = (SAMPLE / "suricata_c2.jsonl").read_text().splitlines()[0]
    doc = json.loads(line)
    doc["http_hosts"] = [f"h{i}.example" for i in range(5000)]
    settings = load_settings(store=tmp_path / "soc-agent.db", playbooks=[tmp_path / "pb"])
    async with open_components(settings) as c:
        outcome = await c.agent.handle(normalize(doc))
    decision = outcome.decision
    assert decision.playbook == "costly-pairs"
    (rule,) = [b for b in decision.breakdown if b.rule == "repeated-pair"]
    assert not rule.evaluated and "not evaluated" in rule.reason and "5000 items" in rule.reason
    (block,) = decision.actions
    # 40 scored, 90 reachable had the rule run: a human decides, nothing is quietly notified
    assert block.disposition is Disposition.ESCALATED, block
    assert "repeated-pair" in block.reason


async def test_an_alert_with_more_entities_than_kept_is_a_finding_and_escalates(
    tmp_path: Path,
) -> None:
    # The attacker pads the sign-in alert with 2,000 IPs: only the first 256 entities
    # are kept, so a rule that did not fire on them might have fired on the rest.
    doc = _padded(2000)
    decision, _ = await _decide(tmp_path, doc)
    truncated = [b for b in decision.breakdown if b.rule == "ingest.entities_truncated"]  # type: ignore[attr-defined]
    assert truncated and not truncated[0].evaluated
    assert "kept 256 of 2003 (not kept: ip=1747); rules saw only those" in truncated[0].reason
    others = [b for b in decision.breakdown if not b.evaluated and b.rule != truncated[0].rule]  # type: ignore[attr-defined]
    assert others, "the rules that could not see every entity are named"
    for action in decision.actions:  # type: ignore[attr-defined]
        assert action.disposition is not Disposition.NOTIFIED or action.rule != "threshold.notify"
    revoke = {a.action: a for a in decision.actions}["revoke_sessions"]  # type: ignore[attr-defined]
    assert revoke.disposition in (Disposition.ESCALATED, Disposition.PROPOSED)


async def test_the_entity_cap_is_a_setting_and_every_rule_that_did_not_fire_says_so(
    tmp_path: Path,
) -> None:
    # 40 padding IPs past a cap of 8: the user is kept (it comes first) with 7 IPs, few
    # enough for the lookups to take them all; a rule on those lookups that did not fire
    # could have fired on the 35 IPs no one looked up.
    alerts = tmp_path / "padded.json"
    alerts.write_text(json.dumps(_padded(40)))
    settings = load_settings(store=tmp_path / "soc-agent.db", runtime={"max_entities_per_alert": 8})
    outcomes: list[AlertOutcome] = []

    async def keep(outcome: AlertOutcome) -> None:
        outcomes.append(outcome)

    async with open_components(settings) as c:
        await run_embedded(c, [alerts], on_outcome=keep)
    [outcome] = outcomes
    assert [e.type for e in outcome.alert.entities] == [EntityType.USER] + [EntityType.IP] * 7
    assert outcome.alert.labels["ingest.entities_truncated_types"] == "ip=35"
    breakdown = {b.rule: b for b in outcome.decision.breakdown}
    finding = breakdown["ingest.entities_truncated"]
    assert not finding.evaluated
    assert "kept 8 of 43 (not kept: ip=35)" in finding.reason
    intel = await _evidence(settings, outcome, "ip_intel")
    assert intel.overflow == 0 and len(intel.result) == 7  # every kept IP was looked up
    anonymizer = breakdown["ip-anonymizer"]  # reads only the lookups: no silent zero either
    assert not anonymizer.evaluated
    assert anonymizer.reason.endswith("the rule saw 8 of the alert's 43 entities")


async def _evidence(settings: Settings, outcome: AlertOutcome, step: str) -> Evidence:
    async with open_components(settings) as c:
        investigation = await c.store.get_investigation(outcome.decision.investigation_id or "")
    assert investigation is not None
    [evidence] = [e for e in investigation.evidence if e.step == step]
    return evidence
