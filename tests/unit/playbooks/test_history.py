"""Memory of past cases in expressions: counts, windows, names, and where it may be read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from soc_agent.errors import ExpressionError
from soc_agent.models import Approver, IncidentVerdict, Role, Verdict
from soc_agent.playbooks import load_playbooks
from soc_agent.playbooks.expressions import evaluate
from soc_agent.playbooks.history import HistoryView, history_in_effect
from soc_agent.playbooks.loader import PlaybookValidationError
from tests.unit.playbooks.pb_helpers import T0, write
from tests.unit.playbooks.test_loader import GOOD

RULE = "elastic:encoded-powershell"
CTX = {"alert": {"severity": "high"}, "incident": {}}


def closing(n: int, verdict: Verdict, days_ago: float, *names: str) -> IncidentVerdict:
    return IncidentVerdict(
        id=f"v-{n}",
        incident_id=f"inc-{n}",
        verdict=verdict,
        reason="closed",
        closed_by=Approver.of("token", "alice", Role.ANALYST),
        closed_at=T0 - timedelta(days=days_ago),
        rules=[RULE],
        entities=list(names or ("host:build-01", "host:build-01.acme.example")),
    )


VIEW = HistoryView(
    [
        *(closing(i, Verdict.FALSE_POSITIVE, i) for i in range(1, 5)),
        closing(9, Verdict.TRUE_POSITIVE, 20),
        closing(10, Verdict.FALSE_POSITIVE, 45),  # outside 30 days
        closing(11, Verdict.FALSE_POSITIVE, -1),  # after the alert: a replay must not see it
        closing(12, Verdict.BENIGN_TRUE_POSITIVE, 0.5, "host:ws-9"),
    ],
    T0,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (f'history.verdicts("{RULE}", "host:BUILD-01", 30)', {
            "true_positive": 1, "benign_true_positive": 0, "false_positive": 4, "total": 5}),
        (f'history.verdicts("{RULE}", "host:build-01.acme.example", 3).false_positive', 3),
        ('history.verdicts("elastic:other", "host:build-01", 30).total', 0),
        ('history.last_verdict("host:build-01")', "false_positive"),
        ('history.last_verdict("host:ws-9")', "benign_true_positive"),
        ('history.last_verdict("user:nobody") == null', True),
    ],
)  # fmt: skip
def test_history_answers_from_the_closings_before_the_alert(
    expression: str, expected: object
) -> None:
    with history_in_effect(VIEW):
        assert evaluate(expression, CTX) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (f'history.verdicts("{RULE}", "build-01", 30)', "not an entity key"),
        (f'history.verdicts("{RULE}", "host:build-01", 91)', "from 1 to 90"),
        (f'history.verdicts("{RULE}", "host:build-01", 0)', "from 1 to 90"),
    ],
)
def test_bad_history_arguments_are_errors_not_zero(expression: str, message: str) -> None:
    with history_in_effect(VIEW), pytest.raises(ExpressionError, match=message):
        evaluate(expression, CTX)


def test_outside_a_decision_the_history_is_an_error_never_an_empty_answer() -> None:
    with pytest.raises(ExpressionError, match="not available"):
        evaluate(f'history.verdicts("{RULE}", "host:build-01", 30).total == 0', CTX)


def test_history_is_read_in_score_and_respond_rules_only(tmp_path: Path) -> None:
    reads = 'history.last_verdict("host:" + alert.hosts[0]) == "false_positive"'
    in_score = GOOD.replace(
        "when: 'steps.hash_intel.result.exists(r, r.result.verdict == \"malicious\")'",
        f"when: '{reads}'",
    )
    assert load_playbooks([write(tmp_path, "score.yaml", in_score)])
    (tmp_path / "score.yaml").unlink()
    in_match = GOOD.replace("'size(alert.file_hashes) > 0'", f"'{reads}'")
    with pytest.raises(PlaybookValidationError) as caught:
        load_playbooks([write(tmp_path, "match.yaml", in_match)])
    assert any(
        "unknown variable 'history'" in str(e) and "[match]" in str(e) for e in caught.value.errors
    )
