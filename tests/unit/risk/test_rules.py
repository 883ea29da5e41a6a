"""Risk rule files: errors name file, line and field; a failing rule is reported, not
read as "did not fire"."""

from __future__ import annotations

from pathlib import Path

import pytest

from soc_agent.errors import ConfigError
from soc_agent.risk import load_risk_rules, shipped_risk_rules_dir

HOST = {"type": "host", "value": "ws-fin-031", "role": None, "criticality": "unknown"}
EMPTY = {"alerts": 0, "total": 0, "tactics": [], "techniques": [], "rules": []}


def _alert(**fields: object) -> dict[str, object]:
    return {
        "severity": "medium",
        "tactics": [],
        "techniques": [],
        "rule": {"name": "Generic"},
        **fields,
    }


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_rules_load_and_score_a_kill_chain() -> None:
    rules = load_risk_rules([shipped_risk_rules_dir()])
    lsass = _alert(
        tactics=["Credential Access"],
        techniques=["T1003"],
        rule={"name": "LSASS Memory Access by Unsigned Process"},
    )
    score = rules.score(lsass, HOST, EMPTY)
    assert score.points == 45
    assert dict(score.fired) == {
        "severity": 10,
        "credential-access": 15,
        "credential-dumping-tool": 20,
    }

    history = {**EMPTY, "tactics": ["Execution", "Credential Access"], "techniques": ["T1003"]}
    lateral = _alert(tactics=["Lateral Movement"], techniques=["T1021"])
    assert dict(rules.score(lateral, HOST, history).fired) == {
        "severity": 10,
        "lateral-movement": 15,
        "kill-chain-progression": 25,
    }


def test_a_bad_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rules:\n  - id: by-severity\n    description: severity\n    points: 5000\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_risk_rules([path])
    assert caught.value.source == str(path) and caught.value.line == 4
    assert (caught.value.key or "").startswith("rules.0.points")
    assert "-100..1000" in str(caught.value)


def test_an_expression_reading_an_unknown_name_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rules:\n"
        "  - id: steps\n"
        "    description: reads a playbook's steps\n"
        "    when: steps.intel.ok\n"
        "    points: 5\n",
    )
    with pytest.raises(ConfigError, match=r"unknown name.*steps.*risk rules read alert, entity"):
        load_risk_rules([path])


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("alert.sevrity == 'high'", "alert has no field 'sevrity' (did you mean 'severity'?)"),
        ("entity.kind == 'host'", "entity has no field 'kind'"),
        ("history.tactic.size() > 1", "history has no field 'tactic' (did you mean 'tactics'?)"),
        ("lookup(alert.id)", "unknown function 'lookup'"),
    ],
)
def test_a_misspelt_field_or_function_is_refused_at_load(
    tmp_path: Path, expression: str, problem: str
) -> None:
    path = _write(
        tmp_path,
        f'rules:\n  - id: typo\n    description: x\n    when: "{expression}"\n    points: 5\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_risk_rules([path])
    assert problem in str(caught.value) and caught.value.line == 4


def test_one_id_in_two_files_names_both(tmp_path: Path) -> None:
    first = _write(tmp_path, "rules:\n  - {id: sev, description: a, points: 1}\n")
    second = tmp_path / "more.yaml"
    second.write_text("rules:\n  - {id: sev, description: b, points: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_risk_rules([tmp_path])
    assert str(first) in str(caught.value) and str(second) in str(caught.value)
    assert caught.value.line == 2 and caught.value.key == "rules.0.id"


def test_a_rule_that_cannot_be_evaluated_is_reported_by_id(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rules:\n"
        "  - {id: label, description: reads a label, when: 'alert.labels.team == \"red\"', "
        "points: 10}\n"
        "  - {id: severity, description: always, points: 5}\n"
        "  - {id: text-points, description: bad points, points: 'alert.severity'}\n",
    )
    score = load_risk_rules([path]).score(_alert(labels={}), HOST, EMPTY)
    assert score.points == 5 and dict(score.fired) == {"severity": 5}
    assert [u.split(":")[0] for u in score.unevaluated] == ["label", "text-points"]
    assert "not a number" in score.unevaluated[1]


def test_rules_score_only_their_entity_types(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rules:\n  - {id: users-only, description: u, points: 7, entities: [user]}\n",
    )
    rules = load_risk_rules([path])
    assert rules.score(_alert(), HOST, EMPTY).points == 0
    user = {"type": "user", "value": "d.okafor", "role": None, "criticality": "unknown"}
    assert rules.score(_alert(), user, EMPTY).points == 7


def test_rules_see_only_the_alert_fields_they_read_and_score_the_same(tmp_path: Path) -> None:
    shipped = load_risk_rules([shipped_risk_rules_dir()])
    full = _alert(
        tactics=["Credential Access"],
        techniques=["T1003"],
        rule={"name": "LSASS Memory Access by Unsigned Process"},
        original={"huge": ["x"] * 1000},
        entities=[{"type": "host", "value": "ws-fin-031"}],
    )
    view = shipped.alert_view(full)
    assert "original" not in view and "entities" not in view
    assert set(view) <= set(full) and view["tactics"] == full["tactics"]
    assert shipped.score(view, HOST, EMPTY) == shipped.score(full, HOST, EMPTY)
    # A rule reading the alert other than field by field sees all of it.
    whole = load_risk_rules(
        [
            _write(
                tmp_path,
                "rules:\n  - {id: any, description: d, when: 'size(alert) > 0', points: 1}\n",
            )
        ]
    )
    assert whole.alert_view(full) is full
