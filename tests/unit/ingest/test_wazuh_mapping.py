"""The shipped Wazuh mapping on alerts shaped as the Wazuh manager writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soc_agent.errors import ConfigError, NormalizationError
from soc_agent.ingest import FieldMapping, load_mappings, normalize, parse_payload
from soc_agent.models import Alert, Severity

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "wazuh"
# Wazuh is a built-in format, detected first: the shipped mapping is reached by its name.
HINT = "wazuh_custom"
WAZUH = ROOT / "samples" / "mappings" / "wazuh.yaml"


@pytest.fixture(scope="module")
def mappings() -> list[FieldMapping]:
    return load_mappings([WAZUH])


def _alert(name: str, mappings: list[FieldMapping]) -> Alert:
    return normalize(json.loads((FIXTURES / name).read_text()), mappings=mappings, format_hint=HINT)


def _entities(alert: Alert) -> set[tuple[str, str, str | None]]:
    return {(e.type.value, e.value, e.role) for e in alert.entities}


def test_sshd_brute_force(mappings: list[FieldMapping]) -> None:
    alert = _alert("sshd-brute-force.json", mappings)
    assert (alert.format, alert.id) == (HINT, "wazuh_custom:1763629200.1180421")
    assert alert.severity is Severity.HIGH
    assert alert.rule.id == "5763"
    assert alert.techniques == ["T1110"] and alert.tactics == ["Credential Access"]
    assert {
        ("host", "bastion-01", "target"),
        ("ip", "203.0.113.45", "source"),
        ("user", "admin", "target"),
    } <= _entities(alert)
    assert alert.labels["groups"] == "syslog,sshd,authentication_failures"
    assert alert.labels["level"] == "10"


def test_a_routine_login_is_low(mappings: list[FieldMapping]) -> None:
    alert = _alert("sshd-login-success.json", mappings)
    assert alert.severity is Severity.LOW
    assert alert.techniques == ["T1078", "T1021"]
    assert "Lateral Movement" in alert.tactics


def test_file_integrity_keeps_the_new_hashes_and_the_path(mappings: list[FieldMapping]) -> None:
    alert = _alert("syscheck-modified.json", mappings)
    hashes = {e.value for e in alert.entities if e.type.value == "file_hash"}
    assert hashes == {
        "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9",
        "8f14e45fceea167a5a36dedd4bea2543",
    }
    assert alert.labels["file"] == "/usr/bin/sshd"
    assert alert.severity is Severity.MEDIUM and alert.tactics == ["Impact"]


def test_windows_event_fields(mappings: list[FieldMapping]) -> None:
    alert = _alert("windows-logon-failure.json", mappings)
    assert ("user", "jdoe", "target") in _entities(alert)
    assert ("host", "ws-fin-042", "target") in _entities(alert)
    assert any(e.type.value == "process" for e in alert.entities)


def test_a_pattern_finds_the_source_in_the_log_line(mappings: list[FieldMapping]) -> None:
    alert = _alert("pam-login-no-srcip.json", mappings)
    assert ("ip", "198.51.100.77", "source") in _entities(alert)
    assert ("user", "postgres", "target") in _entities(alert)


def test_a_record_without_its_timestamp_is_refused_naming_it(
    mappings: list[FieldMapping],
) -> None:
    doc = json.loads((FIXTURES / "sshd-brute-force.json").read_text())
    del doc["timestamp"]
    with pytest.raises(NormalizationError, match="missing required field 'timestamp'"):
        normalize(doc, mappings=mappings, format_hint=HINT)


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ("{type: ip, path: full_log, pattern: '(a)(b)'}", "at most one group"),
        ("{type: ip, path: full_log, pattern: '(unclosed'}", "invalid regular expression"),
    ],
)
def test_a_bad_pattern_names_file_line_and_field(tmp_path: Path, entity: str, message: str) -> None:
    text = WAZUH.read_text().replace(
        "    - {type: host, path: agent.name, role: target}\n", f"    - {entity}\n"
    )
    path = tmp_path / "wazuh.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_mappings([path])
    assert caught.value.key == "fields.entities.0.pattern"
    assert caught.value.line is not None and message in str(caught.value)


def test_a_tactic_map_must_name_attack_tactics(tmp_path: Path) -> None:
    text = WAZUH.read_text().replace(
        "  tactics: rule.mitre.tactic",
        "  tactics: {path: rule.mitre.tactic, map: {recon: Reconnaissance, boom: Explosions}}",
    )
    path = tmp_path / "wazuh.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="'Explosions' \\(for 'boom'\\) is not an ATT&CK"):
        load_mappings([path])


def test_a_tactic_map_turns_vendor_words_into_attack_names(
    tmp_path: Path,
) -> None:
    text = WAZUH.read_text().replace(
        "  tactics: rule.mitre.tactic",
        "  tactics: {path: rule.groups, map: {authentication_failures: TA0006}}",
    )
    path = tmp_path / "wazuh.yaml"
    path.write_text(text)
    alert = _alert("sshd-brute-force.json", load_mappings([path]))
    assert alert.tactics == ["Credential Access"]


def test_keep_conditions_filter_records_without_dead_letters(tmp_path: Path) -> None:
    text = WAZUH.read_text().replace(
        "\nfields:\n", "\nkeep:\n  - {field: rule.level, at_least: 5}\n\nfields:\n", 1
    )
    path = tmp_path / "wazuh.yaml"
    path.write_text(text)
    mappings = load_mappings([path])
    lines = [
        (FIXTURES / name).read_text().strip()
        for name in ("sshd-brute-force.json", "sshd-login-success.json")
    ]
    result = parse_payload(
        "\n".join(lines).encode(), source="alerts.json", mappings=mappings, format_hint=HINT
    )
    assert [a.id for a in result.alerts] == ["wazuh_custom:1763629200.1180421"]
    assert result.dead_letters == []
    (left_out,) = result.filtered
    assert left_out.mapping == HINT and left_out.source == "alerts.json:line 2"
    assert left_out.reason == "rule.level is '3', below 5"
