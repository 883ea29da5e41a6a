"""The soc_risk format: the records the risk ledger raises, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from soc_agent.errors import NormalizationError
from soc_agent.ingest import detect_format, normalize
from soc_agent.models import Severity


def _record(**body: Any) -> dict[str, Any]:
    return {
        "soc_risk": {
            "version": 1,
            "id": "risk-0123456789abcdef01234567",
            "entity": {"type": "user", "value": "D.Okafor"},
            "window": {"start": "2026-11-19T14:00:00+00:00", "end": "2026-11-20T14:00:00+00:00"},
            "total": 310,
            "threshold": 100,
            "created_at": "2026-11-20T13:15:02+00:00",
            "alert_count": 7,
            "dropped": 0,
            "tactics": ["Execution", "Credential Access", "no such tactic"],
            "techniques": ["T1059", "T1003", "not-a-technique"],
            "contributions": [
                {"alert_id": "elastic:1", "title": "LSASS access", "points": 45, "rules": []}
            ],
            **body,
        }
    }


def test_a_risk_record_is_detected_and_normalized() -> None:
    assert detect_format(_record()) == "soc_risk"
    alert = normalize(_record())
    assert alert.id == "soc_risk:risk-0123456789abcdef01234567"
    assert alert.severity is Severity.CRITICAL and alert.risk_score == 100
    assert [(e.key, e.role) for e in alert.entities] == [("user:d.okafor", "risk_subject")]
    assert alert.tactics == ["Execution", "Credential Access"]
    assert alert.techniques == ["T1059", "T1003"]
    assert alert.title == "Risk 310 for user D.Okafor (threshold 100, 7 alerts)"
    assert "45 points: LSASS access (elastic:1)" in (alert.description or "")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"version": 2}, "unknown version 2"),
        ({"id": "risk-../../etc"}, "not a risk record id"),
        ({"entity": {"type": "planet", "value": "x"}}, "is not an entity type"),
        ({"threshold": 0}, "positive 'threshold'"),
        ({"created_at": None}, "created_at"),
    ],
)
def test_a_bad_risk_record_is_refused_with_the_reason(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(NormalizationError, match=reason):
        normalize(_record(**body))
