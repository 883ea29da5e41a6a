"""The shipped labelled history (samples/history/labelled.jsonl), the corpus `calibrate`
measures against: reproducible from its generator, accepted by the real normalizers,
spread over the month, reaching every shipped playbook, and correlating into incidents
that each carry one verdict."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from soc_agent_samples import history

from soc_agent.correlate.correlator import CorrelationResult, Correlator
from soc_agent.correlate.state import InMemoryCorrelationState
from soc_agent.ingest import detect_format, normalize
from soc_agent.models import Alert, EntityType
from soc_agent.models.identity import Approver, Role
from soc_agent.models.verdict import Verdict
from soc_agent.playbooks import match_playbooks
from soc_agent.runtime.playbook_set import load_all_playbooks
from soc_agent.settings import Settings
from soc_agent.settings.agent import with_packs

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "samples" / "history" / "labelled.jsonl"
GENERATOR = REPO / "samples" / "history.py"
# Only soc-agent's own risk alerts (format soc_risk) reach it; no vendor record can.
UNREACHABLE = {"risk-threshold"}


@dataclass(frozen=True)
class Replayed:
    record: dict[str, Any]
    alert: Alert
    correlation: CorrelationResult
    playbook: str


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SHIPPED.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def replayed(records: list[dict[str, Any]]) -> list[Replayed]:
    """Each record's alert normalised (auto-detected), correlated in file order as the
    pipeline does, and matched against the default deployment's playbooks."""
    settings = with_packs(Settings())
    playbooks = load_all_playbooks(settings)
    correlator = Correlator(InMemoryCorrelationState(), settings.correlation)

    async def run() -> list[Replayed]:
        out = []
        for record in records:
            alert = normalize(record["alert"])
            result = await correlator.correlate(alert)
            selection = match_playbooks(playbooks, alert, result.incident)
            assert not selection.errors, (alert.id, selection.errors)
            assert selection.playbook is not None
            out.append(Replayed(record, alert, result, selection.playbook.name))
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("how", ["module", "script"])
def test_regenerating_gives_the_shipped_file_byte_for_byte(tmp_path: Path, how: str) -> None:
    out = tmp_path / "labelled.jsonl"
    command = (
        [sys.executable, "-m", "soc_agent_samples.history"]
        if how == "module"
        else [sys.executable, str(GENERATOR)]
    )
    subprocess.run([*command, "--out", str(out), "--quiet"], check=True, timeout=120, cwd=tmp_path)
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert history.DEFAULT_OUT.resolve() == SHIPPED  # where a plain run writes


def test_records_have_the_labelled_shape(records: list[dict[str, Any]]) -> None:
    assert len(records) >= 300
    verdicts = Counter(r["verdict"] for r in records)
    assert set(verdicts) == {v.value for v in Verdict}
    for r in records:
        assert set(r) == {"verdict", "reason", "closed_by", "closed_at", "alert"}
        assert r["reason"].strip()
        Approver(name=r["closed_by"], role=Role.ANALYST)  # a namespaced identity
        assert r["closed_by"].startswith("token:")
        assert r["closed_at"].endswith("Z")
        datetime.fromisoformat(r["closed_at"])
        assert isinstance(r["alert"], dict)


def test_every_alert_is_detected_and_normalised(records: list[dict[str, Any]]) -> None:
    formats: Counter[str] = Counter()
    for r in records:
        fmt = detect_format(r["alert"])
        assert fmt is not None, r["alert"]
        formats[fmt] += 1
        normalize(r["alert"])  # raises NormalizationError for a dead letter
    # One record shape per vendor of the demo alerts.
    assert set(formats) == {
        "crowdstrike",
        "elastic",
        "guardduty",
        "ms_graph",
        "ocsf",
        "splunk",
        "suricata",
    }


def test_alerts_are_unique_in_time_order_over_the_month(replayed: list[Replayed]) -> None:
    ids = Counter(r.alert.id for r in replayed)
    assert [i for i, n in ids.items() if n > 1] == []
    times = [r.alert.created_at for r in replayed]
    assert times == sorted(times)
    assert times[-1] - times[0] >= timedelta(days=28)
    for r in replayed:
        assert datetime.fromisoformat(r.record["closed_at"]) >= r.alert.created_at


def test_every_reachable_shipped_playbook_is_matched_by_ten_records(
    replayed: list[Replayed],
) -> None:
    shipped = {
        p.name for p in load_all_playbooks(with_packs(Settings())) if p.name not in UNREACHABLE
    }
    on_disk = {
        path.stem
        for folder in (REPO / "playbooks", REPO / "packs/soc_agent_packs/identity/playbooks")
        for path in folder.glob("*.yaml")
    } - UNREACHABLE
    assert on_disk <= shipped
    reach = Counter(r.playbook for r in replayed)
    assert {name: reach[name] for name in shipped if reach[name] < 10} == {}


def test_a_rule_on_one_host_closed_as_false_positive_hides_a_few_true_positives(
    replayed: list[Replayed],
) -> None:
    by_rule_host: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for r in replayed:
        for host in r.alert.values_of(EntityType.HOST):
            by_rule_host[(r.alert.format, r.alert.rule.id or r.alert.rule.name, host)][
                r.record["verdict"]
            ] += 1
    families = [
        key
        for key, counts in by_rule_host.items()
        if counts["false_positive"] >= 20 and 2 <= counts["true_positive"] <= 5
    ]
    assert families, dict(by_rule_host)


def test_each_incident_carries_one_verdict_and_no_alert_is_a_duplicate(
    replayed: list[Replayed],
) -> None:
    """Calibration labels an incident by its alerts' verdicts: alerts that disagree never
    share one, and none is folded into another as a duplicate (each gets a decision)."""
    outcomes = Counter(r.correlation.outcome for r in replayed)
    assert outcomes["duplicate"] == 0
    verdicts: dict[str, set[str]] = defaultdict(set)
    for r in replayed:
        verdicts[r.correlation.incident.id].add(r.record["verdict"])
    assert {i: v for i, v in verdicts.items() if len(v) > 1} == {}
