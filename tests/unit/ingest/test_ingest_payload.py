"""Bytes in, alerts and dead letters out: encodings, shapes and garbage never crash."""

from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from soc_agent.errors import NormalizationError
from soc_agent.ingest import IngestResult, normalize, parse_payload
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    MAX_TITLE_CHARS,
    TRUNCATION_MARKER,
    EntitySet,
)
from soc_agent.models import EntityType
from soc_agent.models.ids import dead_letter_id

ALERTS = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def doc(relative: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ALERTS / relative).read_bytes())
    return loaded


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse(data: bytes, **kwargs: Any) -> IngestResult:
    kwargs.setdefault("source", "test")
    kwargs.setdefault("received_at", RECEIVED)
    return parse_payload(data, **kwargs)


SURICATA = doc("suricata/et_malware_http_c2.json")
ELASTIC = doc("elastic/encoded_powershell_flattened.json")
GRAPH = doc("ms_graph/mdo_phish.json")


# --- shapes -------------------------------------------------------------------------------------


def test_json_array_with_one_bad_element_keeps_the_others() -> None:
    bad = {"event_type": "alert", "timestamp": "yesterday", "src_ip": "10.0.0.1", "alert": {}}
    data = json.dumps([SURICATA, bad, GRAPH, 7]).encode()
    result = parse(data, source="batch.json")
    assert [a.format for a in result.alerts] == ["suricata", "ms_graph"]
    assert [d.source for d in result.dead_letters] == ["batch.json:item 2", "batch.json:item 4"]
    first, second = result.dead_letters
    assert first.reason == "suricata: missing required field 'alert.signature'"
    assert first.original == compact(bad)
    assert second.reason == "record is a JSON number, not a JSON object"
    assert second.original == b"7"


def test_json_lines_with_one_bad_line_keeps_the_others() -> None:
    lines = [compact(SURICATA), b'{"event_type": "alert", "timestamp": ', b"", compact(GRAPH)]
    data = b"\n".join(lines) + b"\n"
    result = parse(data, source="file.jsonl")
    assert [a.format for a in result.alerts] == ["suricata", "ms_graph"]
    [dead] = result.dead_letters
    assert dead.source == "file.jsonl:line 2"
    assert dead.original == lines[1]
    assert dead.reason.startswith("line 2: invalid JSON: Expecting value")


def test_crlf_json_lines_are_accepted() -> None:
    data = compact(SURICATA) + b"\r\n" + compact(ELASTIC) + b"\r\n"
    result = parse(data)
    assert [a.format for a in result.alerts] == ["suricata", "elastic"]


def test_getfindings_envelope_is_split_per_finding() -> None:
    data = (ALERTS / "guardduty/getfindings_two.json").read_bytes()
    result = parse(data, source="gd.json")
    assert len(result.alerts) == 2
    assert result.dead_letters == []


def test_empty_json_array_holds_no_record() -> None:
    assert parse(b" [ ] ") == IngestResult([], [])


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n"])
def test_empty_input_is_one_dead_letter(data: bytes) -> None:
    result = parse(data, source="kafka:soc.alerts/3@1200")
    assert result.alerts == []
    [dead] = result.dead_letters
    assert dead.reason.startswith("empty payload")
    assert dead.original == data
    assert dead.source == "kafka:soc.alerts/3@1200"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"42", "record is a JSON number, not a JSON object"),
        (b'"alert"', "record is a JSON string, not a JSON object"),
        (b"null", "record is JSON null, not a JSON object"),
        (b"[[1, 2]]", "record is a JSON array, not a JSON object"),
        (b"true", "record is a JSON boolean, not a JSON object"),
    ],
)
def test_non_object_records_are_dead_letters(data: bytes, reason: str) -> None:
    [dead] = parse(data).dead_letters
    assert dead.reason == reason


# --- broken JSON --------------------------------------------------------------------------------


def test_truncated_json_is_one_dead_letter_with_the_exact_bytes() -> None:
    data = compact(ELASTIC)[:500]
    result = parse(data, source="webhook")
    assert result.alerts == []
    [dead] = result.dead_letters
    assert dead.original == data
    assert dead.reason.startswith("invalid JSON: ")
    assert "char" in dead.reason


def test_truncated_pretty_printed_json_is_not_read_as_json_lines() -> None:
    data = json.dumps(ELASTIC, indent=2).encode()[:1500]
    [dead] = parse(data).dead_letters
    assert dead.original == data
    assert dead.reason.startswith("invalid JSON")


def test_deeply_nested_json_is_a_dead_letter() -> None:
    data = b"[" * 200_000 + b"]" * 200_000
    [dead] = parse(data).dead_letters
    assert "nested too deeply" in dead.reason


def test_integer_with_too_many_digits_is_a_dead_letter() -> None:
    data = b'{"severity": ' + b"9" * 5000 + b"}"
    [dead] = parse(data).dead_letters
    assert dead.reason.startswith("invalid JSON")


def test_lone_surrogate_escape_is_a_dead_letter() -> None:
    record = dict(SURICATA, alert=dict(SURICATA["alert"], signature="ET bad \\ud800"))
    data = compact(record).replace(b"\\\\ud800", b"\\ud800")
    [dead] = parse(data).dead_letters
    assert "lone surrogate" in dead.reason


# --- encodings ----------------------------------------------------------------------------------


def test_latin1_bytes_are_a_dead_letter_naming_the_encoding() -> None:
    record = dict(GRAPH, title="Connexion suspecte depuis un café")
    data = json.dumps(record, ensure_ascii=False).encode("latin-1")
    result = parse(data)
    assert result.alerts == []
    [dead] = result.dead_letters
    assert dead.original == data
    assert dead.reason.startswith("payload is not valid UTF-8: invalid")
    assert "byte 0xe9" in dead.reason


def test_invalid_utf8_on_one_json_line_costs_only_that_line() -> None:
    bad = b'{"title": "\xff\xfe broken"}'
    data = compact(SURICATA) + b"\n" + bad + b"\n" + compact(GRAPH)
    result = parse(data, source="eve.json")
    assert len(result.alerts) == 2
    [dead] = result.dead_letters
    assert dead.source == "eve.json:line 2"
    assert dead.original == bad
    assert "not valid UTF-8" in dead.reason


@pytest.mark.parametrize("bom", [codecs.BOM_UTF8, b""])
def test_utf8_with_or_without_bom(bom: bytes) -> None:
    data = bom + json.dumps(dict(GRAPH, title="Anmeldung aus Köln"), ensure_ascii=False).encode()
    [alert] = parse(data).alerts
    assert alert.title == "Anmeldung aus Köln"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom_are_accepted(encoding: str) -> None:
    text = compact(SURICATA).decode() + "\n" + compact(ELASTIC).decode()
    raw = text.encode(encoding)
    if encoding == "utf-16-be":
        raw = codecs.BOM_UTF16_BE + raw
    result = parse(raw)
    assert [a.format for a in result.alerts] == ["suricata", "elastic"]


def test_utf16_without_bom_says_so() -> None:
    data = compact(SURICATA).decode().encode("utf-16-le")
    [dead] = parse(data).dead_letters
    assert "UTF-16 without a byte-order mark" in dead.reason
    assert dead.original == data


# --- wrong types and huge values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (
            dict(ELASTIC, **{"kibana.alert.severity": {"level": "high"}}),
            "elastic: field 'kibana.alert.severity' must be a string, got object",
        ),
        (
            dict(SURICATA, timestamp=True),
            "suricata: field 'timestamp' must be an ISO 8601 time, got True",
        ),
        (
            dict(GRAPH, createdDateTime="last tuesday"),
            "ms_graph: field 'createdDateTime' must be an ISO 8601 time, got 'last tuesday'",
        ),
        (
            dict(doc("guardduty/ec2_bitcoin_outbound_camel.json"), severity="HIGH"),
            "guardduty: field 'severity' must be a number, got 'HIGH'",
        ),
        (
            dict(doc("ocsf/detection_finding_edr_lsass.json"), time=-1e300),
            "ocsf: field 'time' must be epoch milliseconds, got -1e+300",
        ),
        (
            dict(doc("splunk/notable_informational_risk.json"), _time=[]),
            "splunk: field '_time' must be a timestamp, got []",
        ),
        (
            {
                **doc("crowdstrike/legacy_network_inbound.json"),
                "event": {
                    **doc("crowdstrike/legacy_network_inbound.json")["event"],
                    "Severity": 9,
                    "SeverityName": None,
                },
            },
            "crowdstrike: field 'event.Severity' must be 1-5 in a DetectionSummaryEvent, got 9",
        ),
        (
            dict(GRAPH, title=None),
            "ms_graph: no title: the record names no rule or title",
        ),
        (
            dict(GRAPH, id=["a", "b"]),
            "ms_graph: field 'id' must be a string, got array",
        ),
    ],
)
def test_wrong_types_are_dead_letters_with_the_field_named(
    record: dict[str, Any], reason: str
) -> None:
    [dead] = parse(compact(record)).dead_letters
    assert dead.reason == reason
    with pytest.raises(NormalizationError, match=r"field|title"):
        normalize(record)


def test_huge_title_is_truncated_with_a_marker() -> None:
    record = dict(GRAPH, title="A" * 10_000_000, description="d" * 100_000)
    [alert] = parse(compact(record)).alerts
    assert len(alert.title) == MAX_TITLE_CHARS
    assert alert.title.endswith(TRUNCATION_MARKER)
    assert alert.description is not None
    assert alert.description.endswith(TRUNCATION_MARKER)
    assert alert.original["title"] == record["title"]  # the original stays untouched


def test_too_many_entities_are_capped_and_counted() -> None:
    ips = [f"10.{i // 256}.{i % 256}.1" for i in range(1000)]
    record = dict(ELASTIC, source={"ip": ips})
    [alert] = parse(compact(record)).alerts
    assert len(alert.entities) == MAX_ENTITIES
    assert int(alert.labels["ingest.entities_truncated"]) > 700


def test_entities_past_the_cap_are_counted_by_type_and_the_first_kept() -> None:
    ips = [f"10.{i // 256}.{i % 256}.1" for i in range(1000)]
    hosts = [f"ws-{i:04d}" for i in range(300)]
    record = dict(ELASTIC, source={"ip": ips}, host={"name": hosts})
    [alert] = parse(compact(record), max_entities=40).alerts
    assert len(alert.entities) == 40
    # deterministic: the first ones the normaliser met are the ones kept
    [again] = parse(compact(record), max_entities=40).alerts
    assert again.entities == alert.entities
    by_type = dict(p.split("=") for p in alert.labels["ingest.entities_truncated_types"].split(","))
    kept = {t: sum(e.type.value == t for e in alert.entities) for t in ("ip", "host")}
    assert int(by_type["ip"]) == 1000 - kept["ip"]
    assert int(by_type["host"]) == 300 - kept["host"]
    assert int(alert.labels["ingest.entities_truncated"]) == sum(int(n) for n in by_type.values())


def test_past_the_cap_a_value_already_kept_is_not_counted_as_dropped() -> None:
    ents = EntitySet(limit=2)
    for value in ("10.0.0.1", "WS-1", "10.0.0.1", "10.0.0.3", "10.0.0.3"):
        ents.add(EntityType.HOST if value.startswith("WS") else EntityType.IP, value)
    ents.add(EntityType.HOST, "ws-1", "source")  # kept already, in another role
    assert [e.key for e in ents.items] == ["ip:10.0.0.1", "host:ws-1"]
    assert ents.overflow == {"ip": 2}  # values not kept are counted, repeats too


@pytest.mark.parametrize(
    ("relative", "field", "make"),
    [
        (
            "ms_graph/mdo_phish.json",
            "evidence",
            lambda i: {
                "@odata.type": "#microsoft.graph.security.ipEvidence",
                "ipAddress": f"198.51.{i // 256}.{i % 256}",
            },
        ),
        (
            "ocsf/detection_finding_phish_evidences.json",
            "observables",
            lambda i: {
                "name": "dst_endpoint.ip",
                "type_id": 2,
                "value": f"198.51.{i // 256}.{i % 256}",
            },
        ),
        (
            "ocsf/detection_finding_phish_evidences.json",
            "resources",
            lambda i: {"uid": f"arn:aws:s3:::bucket-{i}", "type": "AWS::S3::Bucket"},
        ),
    ],
)
def test_vendor_lists_past_the_cap_are_counted_not_skipped(
    relative: str, field: str, make: Any
) -> None:
    record = doc(relative)
    record[field] = [*record.get(field, []), *(make(i) for i in range(2000))]
    [alert] = parse(compact(record)).alerts
    assert len(alert.entities) == MAX_ENTITIES
    assert int(alert.labels["ingest.entities_truncated"]) >= 2000 - MAX_ENTITIES


def test_invalid_entity_values_are_dropped_not_fatal() -> None:
    record = dict(SURICATA, src_ip="-", dest_ip="999.1.1.1")
    record["http"] = dict(SURICATA["http"], hostname="x" * 5000)
    [alert] = parse(compact(record)).alerts
    assert all(e.type.value != "ip" for e in alert.entities)
    # "-" is "no value"; the bad IP, the over-long domain and the URL built from it are dropped
    assert alert.labels["ingest.entities_dropped"] == "3"


def test_an_id_too_long_to_store_is_a_dead_letter() -> None:
    record = dict(GRAPH, id="x" * 1000)
    [dead] = parse(compact(record)).dead_letters
    assert dead.reason.startswith("ms_graph: alert id is 1000 characters, longer than")


# --- hints, metadata ----------------------------------------------------------------------------


def test_unknown_format_hint_is_a_dead_letter_per_record() -> None:
    [dead] = parse(compact(SURICATA), format_hint="qradar").dead_letters
    assert dead.reason.startswith("unknown format hint 'qradar' (known: elastic, ocsf")
    assert dead.format_hint == "qradar"


def test_wrong_format_hint_fails_with_that_formats_reason() -> None:
    [dead] = parse(compact(SURICATA), format_hint="ms_graph").dead_letters
    assert dead.reason == "ms_graph: missing required field 'id'"


def test_received_at_defaults_to_now() -> None:
    before = datetime.now(UTC)
    result = parse_payload(compact(SURICATA) + b"\nnot json\n" + compact(GRAPH), source="s")
    after = datetime.now(UTC)
    assert all(before <= a.received_at <= after for a in result.alerts)
    assert all(before <= d.received_at <= after for d in result.dead_letters)


def test_dead_letter_ids_are_stable_and_depend_on_source_and_bytes() -> None:
    first = parse(b"{broken", source="a").dead_letters[0]
    again = parse(b"{broken", source="a").dead_letters[0]
    other = parse(b"{broken", source="b").dead_letters[0]
    assert first.id == again.id == dead_letter_id("a", b"{broken")
    assert len(first.id) == 24
    assert other.id != first.id


def test_headers_are_kept_on_dead_letters() -> None:
    [dead] = parse(b"{", headers={"content-type": "application/json"}).dead_letters
    assert dead.headers == {"content-type": "application/json"}
