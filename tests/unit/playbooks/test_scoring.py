"""Scoring, candidate actions and playbook selection."""

from __future__ import annotations

from typing import Any

import pytest

from soc_agent.errors import PlaybookError
from soc_agent.models import (
    AutonomyLevel,
    Evidence,
    EvidenceStatus,
    Investigation,
)
from soc_agent.playbooks import build_context, candidates, match_playbooks, score, select_playbook
from soc_agent.playbooks.context import incident_context
from tests.unit.playbooks.pb_helpers import (
    BAD_HASH,
    OTHER_HASH,
    T0,
    asset,
    intel,
    make_alert,
    make_incident,
    playbook,
)

PB = """
name: scoring-test
match: "true"
steps:
  - id: host_asset
    connector: asset_inventory
    capability: lookup_asset
    args: {type: host, value: "${alert.hosts[0]}"}
  - id: hash_intel
    connector: threat_intel
    capability: lookup
    for_each: alert.file_hashes
    args: {indicator: "${item}", type: file_hash}
score:
  base: 10
  rules:
    - id: hash-malicious
      when: 'steps.hash_intel.result.exists(r, r.ok && r.result.verdict == "malicious")'
      points: 60
      reason: >-
        ${size(steps.hash_intel.result.filter(r, r.ok && r.result.verdict == "malicious"))}
        hash(es) known malicious
    - id: critical-host
      when: steps.host_asset.result.criticality in ["high", "critical"]
      points: 20
      reason: "host is ${steps.host_asset.result.criticality}"
    - id: severity
      when: alert.severity == "critical"
      points: 30
      reason: critical alert
respond:
  - id: quarantine
    action: quarantine_file
    when: steps.hash_intel.ok
    for_each: >-
      steps.hash_intel.result.filter(r, r.ok && r.result.verdict != "benign").map(r, r.item)
    target: {type: file_hash, value: "${item}"}
    execute_at: 80
    propose_at: 50
    revert_after: 2d
    requires: [hash_intel]
  - id: isolate
    action: isolate_host
    target: {type: host, value: "${alert.hosts[0]}"}
    execute_at: 90
    propose_at: 60
    notify_at: 30
    autonomy: 3
    requires: [host_asset, hash_intel]
  - id: disable-user
    action: disable_user
    when: size(alert.users) > 0
    target: {type: user, value: '${alert.users.size() > 5 ? alert.users[5] : ""}'}
    propose_at: 50
"""


def _evidence(
    step: str, status: EvidenceStatus, result: Any = None, error: str | None = None
) -> Evidence:
    return Evidence(
        step=step,
        connector="c",
        capability="q",
        status=status,
        result=result,
        error=error,
        started_at=T0,
    )


def _ctx(*evidence: Evidence) -> dict[str, Any]:
    alert = make_alert()
    inv = Investigation(
        id="inv", incident_id="inc", playbook="scoring-test", evidence=list(evidence), started_at=T0
    )
    return build_context(alert, make_incident(alert), inv)


HASHES = [
    {
        "item": BAD_HASH,
        "ok": True,
        "status": "ok",
        "result": intel(BAD_HASH, "malicious"),
        "error": None,
    },
    {
        "item": OTHER_HASH,
        "ok": True,
        "status": "ok",
        "result": intel(OTHER_HASH, "suspicious", score=40),
        "error": None,
    },
]


def test_score_sums_fired_rules_clamps_and_renders_reasons() -> None:
    ctx = _ctx(
        _evidence("host_asset", EvidenceStatus.OK, asset("ws-fin-042", "high")),
        _evidence("hash_intel", EvidenceStatus.OK, HASHES),
    )
    total, breakdown = score(playbook(PB), ctx)
    assert total == 100  # 10 + 60 + 20 + 30 = 120, clamped
    assert [(c.rule, c.points, c.evaluated) for c in breakdown] == [
        ("base", 10, True),
        ("hash-malicious", 60, True),
        ("critical-host", 20, True),
        ("severity", 30, True),
    ]
    assert breakdown[1].reason == "1 hash(es) known malicious"
    assert breakdown[2].reason == "host is high"


def test_missing_evidence_contributes_nothing_and_says_which_step() -> None:
    ctx = _ctx(
        _evidence(
            "host_asset", EvidenceStatus.ERROR, error="asset_inventory.lookup_asset: timed out"
        ),
        _evidence("hash_intel", EvidenceStatus.NOT_RUN, error="not run: step budget exhausted"),
    )
    total, breakdown = score(playbook(PB), ctx)
    assert total == 40  # base + severity only
    missing = {c.rule: c for c in breakdown if not c.evaluated}
    assert set(missing) == {"hash-malicious", "critical-host"}
    assert missing["critical-host"].points == 0
    assert missing["critical-host"].reason == (
        "not evaluated, evidence missing: step 'host_asset' ended error: "
        "asset_inventory.lookup_asset: timed out"
    )
    assert "step 'hash_intel' ended not_run" in missing["hash-malicious"].reason


def test_rule_on_a_step_absent_from_the_investigation() -> None:
    total, breakdown = score(playbook(PB), _ctx())
    assert total == 40
    reasons = {c.rule: c.reason for c in breakdown if not c.evaluated}
    assert (
        reasons["critical-host"]
        == "not evaluated, evidence missing: step 'host_asset' has no evidence"
    )


def test_candidates_one_per_for_each_item_with_thresholds_copied() -> None:
    ctx = _ctx(
        _evidence("host_asset", EvidenceStatus.OK, asset("ws-fin-042", "high")),
        _evidence("hash_intel", EvidenceStatus.OK, HASHES),
    )
    diagnostics: list[str] = []
    found = candidates(playbook(PB), ctx, diagnostics=diagnostics)
    assert [(c.playbook_rule, c.action, c.target.key) for c in found] == [
        ("quarantine", "quarantine_file", f"file_hash:{BAD_HASH}"),
        ("quarantine", "quarantine_file", f"file_hash:{OTHER_HASH}"),
        ("isolate", "isolate_host", "host:ws-fin-042"),
    ]
    quarantine, isolate = found[0], found[2]
    assert (quarantine.execute_at, quarantine.propose_at, quarantine.notify_at) == (80, 50, None)
    assert quarantine.revert_after_seconds == 2 * 86400
    assert quarantine.requires == ["hash_intel"]
    assert isolate.autonomy is AutonomyLevel.CONSULTANT
    assert isolate.requires == ["host_asset", "hash_intel"]
    # the user rule rendered an empty target: dropped, and said so
    assert diagnostics == ["respond rule 'disable-user': target is empty; no candidate"]


def test_candidates_skip_rules_whose_evidence_failed() -> None:
    ctx = _ctx(_evidence("hash_intel", EvidenceStatus.ERROR, error="HTTP 500"))
    found = candidates(playbook(PB), ctx)
    assert [c.action for c in found] == ["isolate_host"]


def test_invalid_target_is_dropped_with_a_diagnostic() -> None:
    text = PB.replace(
        'target: {type: host, value: "${alert.hosts[0]}"}',
        'target: {type: ip, value: "${alert.hosts[0]}"}',
    )
    diagnostics: list[str] = []
    found = candidates(playbook(text), _ctx(), diagnostics=diagnostics)
    assert "isolate_host" not in [c.action for c in found]
    assert any("'isolate'" in d and "not a valid entity" in d for d in diagnostics)


def _pb(name: str, priority: int, match: str) -> Any:
    return playbook(f"name: {name}\npriority: {priority}\nmatch: '{match}'\n")


def test_select_playbook_by_priority_then_name_and_reports_match_errors() -> None:
    alert = make_alert()
    incident = make_incident(alert)
    books = [
        _pb("triage-default", 0, "true"),
        _pb("zz-malware", 300, "size(alert.file_hashes) > 0"),
        _pb("aa-malware", 300, "size(alert.file_hashes) > 0"),
        _pb("phishing", 320, "size(alert.emails) > 0"),
        _pb("broken", 900, 'alert.labels.missing == "x"'),
    ]
    assert select_playbook(books, alert, incident).name == "aa-malware"  # type: ignore[union-attr]
    selection = match_playbooks(books, alert, incident)
    assert selection.matched == ["aa-malware", "zz-malware", "triage-default"]
    assert [e.playbook for e in selection.errors] == ["broken"]
    assert "no such key" in selection.errors[0].message
    assert select_playbook(books[3:], alert, incident) is None


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${alert.file_hashes}", [BAD_HASH, OTHER_HASH]),
        ("${size(alert.file_hashes)}", 2),
        (
            "host ${alert.hosts[0]} (${size(alert.file_hashes)} hashes)",
            "host ws-fin-042 (2 hashes)",
        ),
        ('${ {"a": "}"}.a }', "}"),
        ("cost: $${not a template}", "cost: ${not a template}"),
    ],
)
def test_templates_keep_type_or_interpolate(template: str, expected: Any) -> None:
    from soc_agent.playbooks.templates import render

    assert render({"x": [template]}, _ctx()) == {"x": [expected]}


MODEL_PB = """
name: model-scored
investigator: hybrid
match: "true"
steps: []
score:
  base: 50
  rules:
    - {id: model-malicious, when: 'agent.verdict == "malicious"', points: 40, reason: malicious}
    - {id: model-confident, when: agent.confidence >= 0.8, points: 15, reason: it is confident}
    - {id: severity, when: alert.severity == "critical", points: 10, reason: critical}
respond: []
"""


def test_model_derived_points_are_marked_and_capped_together() -> None:
    pb = playbook(MODEL_PB)
    alert = make_alert()
    ctx = {
        "alert": alert.context(),
        "incident": incident_context(make_incident(alert)),
        "steps": {},
        "agent": {"verdict": "malicious", "confidence": 0.9},
    }
    total, breakdown = score(pb, ctx, max_model_points=20)
    by_rule = {c.rule: c for c in breakdown}
    assert (by_rule["model-malicious"].points, by_rule["model-malicious"].model_derived) == (
        20,
        True,
    )
    assert "model-derived, capped: 20 of 40" in by_rule["model-malicious"].reason
    assert by_rule["model-confident"].points == 0  # the cap is shared
    assert by_rule["severity"].model_derived is False
    assert total == 50 + 20 + 10


def test_only_model_investigated_playbooks_may_read_the_assessment() -> None:
    with pytest.raises(PlaybookError, match="unknown variable 'agent'"):
        playbook(MODEL_PB.replace("investigator: hybrid\n", ""))
