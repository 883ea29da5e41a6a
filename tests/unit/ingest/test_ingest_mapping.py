"""Declarative YAML mappings: loading, validation errors that name file and field, applying."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from soc_agent.errors import ConfigError
from soc_agent.ingest import FieldMapping, detect_format, load_mappings, normalize, parse_payload
from soc_agent.models import Severity

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
MAPPINGS = FIXTURES / "mappings"
WAF = FIXTURES / "alerts" / "acme_waf"
SAMPLE = ROOT / "samples" / "mappings" / "example.yaml"
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def acme() -> list[FieldMapping]:
    return load_mappings([MAPPINGS / "acme_waf.yaml"])


def waf(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((WAF / name).read_text())
    return loaded


def test_shipped_sample_mapping_loads_and_matches_the_fixture_copy() -> None:
    [sample] = load_mappings([SAMPLE])
    [fixture] = load_mappings([MAPPINGS / "acme_waf.yaml"])
    assert sample.model_dump() == fixture.model_dump()
    assert sample.name == "acme-waf"
    assert sample.source == str(SAMPLE)


def test_mapping_normalises_a_matching_record(acme: list[FieldMapping]) -> None:
    record = waf("sqli_block.json")
    assert detect_format(record) is None  # not a built-in format
    alert = normalize(record, mappings=acme, received_at=RECEIVED)
    assert alert.id == "acme-waf:awaf-20250312-7f3a9c"
    assert alert.format == "acme-waf"
    assert (alert.vendor, alert.product) == ("Acme", "Acme WAF")
    assert alert.title == "SQL Injection Attack Detected via libinjection"
    assert alert.rule.id == "942100"
    assert alert.severity is Severity.CRITICAL
    assert alert.created_at == datetime(2025, 3, 12, 13, 20, 0, 123000, tzinfo=UTC)
    assert {(e.type.value, e.value, e.role) for e in alert.entities} == {
        ("ip", "203.0.113.66", "attacker"),
        ("domain", "shop.example.com", "target"),
        ("url", "https://shop.example.com/search?q=1%27+OR+1%3D1", "target"),
    }
    assert alert.techniques == ["T1190"]
    assert alert.labels == {"action": "block", "site": "shop-prod", "rule_group": "sqli"}
    assert alert.original == record


def test_mapping_with_missing_optional_values(acme: list[FieldMapping]) -> None:
    result = parse_payload(
        (WAF / "bot_monitor.json").read_bytes(), source="waf", mappings=acme, received_at=RECEIVED
    )
    [alert] = result.alerts
    assert alert.severity is Severity.LOW
    assert {e.key for e in alert.entities} == {"domain:login.example.com"}  # "-" ip skipped
    assert alert.techniques == []


def test_mapping_hint_and_failures(acme: list[FieldMapping]) -> None:
    record = waf("sqli_block.json")
    assert normalize(record, format_hint="acme-waf", mappings=acme).format == "acme-waf"
    broken = dict(record, event={"id": "x", "ts": "noon"})
    [dead] = parse_payload(json.dumps(broken).encode(), source="w", mappings=acme).dead_letters
    assert dead.reason == "acme-waf: field 'event.ts' must be epoch milliseconds, got 'noon'"
    unmapped = dict(record, rule=dict(record["rule"], level=9))
    assert normalize(unmapped, mappings=acme).severity is Severity.MEDIUM  # the default


def test_builtin_formats_win_over_mappings(acme: list[FieldMapping]) -> None:
    suricata = json.loads((FIXTURES / "alerts/suricata/tls_sni_policy.json").read_text())
    loose = acme[0].model_copy(update={"match": []})
    assert normalize(suricata, mappings=[loose]).format == "suricata"


def test_a_directory_loads_its_yaml_files(tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "waf.yaml")
    (tmp_path / "notes.txt").write_text("not a mapping")
    assert [m.name for m in load_mappings([tmp_path])] == ["acme-waf"]


@pytest.mark.parametrize(
    ("file", "line", "key", "message"),
    [
        ("bad_severity_value.yaml", 13, "fields.severity.map.2", "Input should be"),
        # a missing key points at its parent's line
        ("missing_created_at.yaml", 7, "fields.created_at", "Field required"),
        ("bad_entity_type.yaml", 15, "fields.entities.1.type", "Input should be"),
        ("builtin_name.yaml", 1, "name", "'suricata' is a built-in format name"),
    ],
)
def test_invalid_mappings_name_file_line_and_field(
    file: str, line: int, key: str, message: str
) -> None:
    path = MAPPINGS / file
    with pytest.raises(ConfigError) as caught:
        load_mappings([path])
    error = caught.value
    assert (error.source, error.line, error.key) == (str(path), line, key)
    assert str(error).startswith(f"{path}:{line}: {key}: ")
    assert message in str(error)


def test_broken_yaml_names_the_file_and_line() -> None:
    path = MAPPINGS / "broken_yaml.yaml"
    with pytest.raises(ConfigError) as caught:
        load_mappings([path])
    assert caught.value.source == str(path)
    assert caught.value.line == 6  # where the parser gives up on the unclosed "["
    assert "invalid YAML" in str(caught.value)


def test_missing_file_and_non_mapping_documents(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read mapping file"):
        load_mappings([tmp_path / "absent.yaml"])
    listing = tmp_path / "list.yaml"
    listing.write_text("- name: a\n")
    with pytest.raises(ConfigError, match=r"list\.yaml:1: a mapping file must hold one"):
        load_mappings([listing])


def test_duplicate_mapping_names_are_rejected(tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "a.yaml")
    shutil.copy(SAMPLE, tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="mapping name 'acme-waf' is already used by"):
        load_mappings([tmp_path])


def test_match_condition_needs_exactly_one_test(tmp_path: Path) -> None:
    both = "    equals: acme-waf\n    exists: true\n"
    text = SAMPLE.read_text().replace("    equals: acme-waf\n", both)
    path = tmp_path / "both.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_mappings([path])
    assert caught.value.key == "match.0"
    assert "exactly one of 'equals', 'one_of', 'exists', 'at_least' or 'matches'" in str(
        caught.value
    )


def test_equals_does_not_confuse_booleans_and_numbers(acme: list[FieldMapping]) -> None:
    mapping = FieldMapping.model_validate(
        {
            **acme[0].model_dump(),
            "match": [{"field": "flag", "equals": True}],
        }
    )
    record = waf("sqli_block.json")
    assert mapping.matches(dict(record, flag=True))
    assert not mapping.matches(dict(record, flag=1))
