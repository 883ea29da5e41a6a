"""Files and stdin, read a record at a time: the same records as `parse_payload`, bounded.

JSON lines are read one line at a time whatever their total size; a line longer
than one alert may be is hashed to its end and dead-lettered with its first bytes,
its length and sha256; any other input is read whole up to a bound and parsed as
`parse_payload` would.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soc_agent.ingest import DEAD_LETTER_HEAD_BYTES, parse_payload, read_records
from soc_agent.models import Alert, DeadLetter

ALERTS = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"
FIXTURES = [
    json.loads((ALERTS / name).read_bytes())
    for name in (
        "suricata/et_malware_http_c2.json",
        "elastic/encoded_powershell_flattened.json",
        "ms_graph/mdo_phish.json",
        "guardduty/getfindings_two.json",
        "crowdstrike/epp_masquerading.json",
    )
]
RECEIVED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
RECORD = 64 * 1024
DOCUMENT = 1024 * 1024


def read(data: bytes, *, record: int = RECORD, document: int = DOCUMENT) -> list[Any]:
    return list(
        read_records(
            io.BufferedReader(io.BytesIO(data)),  # type: ignore[arg-type]
            source="in.jsonl",
            clock=lambda: RECEIVED,
            max_record_bytes=record,
            max_document_bytes=document,
        )
    )


def as_parsed(items: list[Any]) -> tuple[list[Any], list[Any]]:
    """Alerts and dead letters in the shape `parse_payload` returns them."""
    alerts = [i.model_dump() for i in items if isinstance(i, Alert)]
    letters = [i.model_dump() for i in items if isinstance(i, DeadLetter)]
    return alerts, letters


def expected(data: bytes, *, record: int = RECORD) -> tuple[list[Any], list[Any]]:
    result = parse_payload(data, source="in.jsonl", received_at=RECEIVED, max_record_bytes=record)
    return [a.model_dump() for a in result.alerts], [d.model_dump() for d in result.dead_letters]


def line(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# Inputs of every shape the payload rules name: JSON lines (blank lines, CRLF, a bad
# line, a line that is not an object, a GetFindings envelope), one document on one or
# many lines, an array, broken JSON, BOMs, other encodings.
SHAPES: dict[str, bytes] = {
    "json lines": b"\n".join(line(d) for d in FIXTURES) + b"\n",
    "json lines, no final newline": b"\n".join(line(d) for d in FIXTURES),
    "json lines, blank lines and crlf": b"\r\n\r\n".join(line(d) for d in FIXTURES) + b"\r\n\n",
    "json lines, bad lines": b"\n".join(
        [line(FIXTURES[0]), b"{not json", b"[1, 2]", b"\xff\xfe{}", line(FIXTURES[1]), b'"x"']
    ),
    "json lines with a bom": codecs.BOM_UTF8 + b"\n".join(line(d) for d in FIXTURES[:2]),
    "leading blank lines": b"\n \n" + b"\n".join(line(d) for d in FIXTURES[:2]),
    "one object on one line": line(FIXTURES[0]),
    "one object, then blank lines": line(FIXTURES[2]) + b"\n\n  \n",
    "pretty-printed object": json.dumps(FIXTURES[1], indent=2).encode(),
    "array": line(FIXTURES),
    "pretty-printed array": b"\n\n" + json.dumps(FIXTURES, indent=2).encode(),
    "truncated pretty-printed": json.dumps(FIXTURES[1], indent=2).encode()[:300],
    "garbage first, then lines": b"garbage\n" + b"\n".join(line(d) for d in FIXTURES[:2]),
    "utf-16 with bom": json.dumps(FIXTURES[0]).encode("utf-16"),
    "latin-1": json.dumps({**FIXTURES[0], "x": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
    "empty": b"",
    "blank": b"\n \r\n",
    "empty array": b"[]",
}


@pytest.mark.parametrize("data", SHAPES.values(), ids=SHAPES.keys())
def test_every_shape_gives_the_records_parse_payload_gives(data: bytes) -> None:
    assert as_parsed(read(data)) == expected(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from([line(d) for d in FIXTURES])
        | st.binary(max_size=40)
        | st.sampled_from([b"", b"  ", b"\r", b"{}", b"[]", b"{", b"null"]),
        min_size=1,
        max_size=8,
    )
)
def test_any_mix_of_lines_gives_the_records_parse_payload_gives(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    # A UTF-8 BOM on a file with invalid bytes elsewhere: parse_payload cannot strip it
    # and loses line 1, the line reader strips it and keeps it. Not the same, on purpose.
    if data.startswith(codecs.BOM_UTF8):
        return
    assert as_parsed(read(data)) == expected(data)


@pytest.mark.parametrize("bad", [b"\x80", b"{}"], ids=["an undecodable line", "all decodable"])
@pytest.mark.parametrize("junk", [b"\x1c", b"\xc2\xa0", b"\xe2\x80\xa8"], ids=["FS", "NBSP", "LS"])
def test_a_line_of_non_json_whitespace_is_a_dead_letter_either_way(bad: bytes, junk: bytes) -> None:
    # Python calls these whitespace; JSON does not. Such a line is garbage, kept as a dead
    # letter, whether or not another line of the file fails to decode (found by hypothesis).
    data = b"\n".join([line(FIXTURES[0]), junk, bad])
    for _, letters in (as_parsed(read(data)), expected(data)):
        assert any(d["original"] == junk for d in letters), letters


class _Served(io.RawIOBase):
    """A file that counts what the reader took from it."""

    def __init__(self, data: bytes) -> None:
        self._data, self.served = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data[self.served : self.served + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.served += len(chunk)
        return len(chunk)


def test_json_lines_are_decided_one_record_at_a_time() -> None:
    docs = [dict(FIXTURES[0], flow_id=i) for i in range(2000)]
    data = b"\n".join(line(d) for d in docs)
    raw = _Served(data)
    records = read_records(
        io.BufferedReader(raw),
        source="storm.jsonl",
        clock=lambda: RECEIVED,
        max_record_bytes=RECORD,
        max_document_bytes=DOCUMENT,
    )
    first = next(records)
    assert isinstance(first, Alert)
    assert raw.served < len(data) // 20, "the first alert came before the rest was read"
    assert 1 + sum(1 for _ in records) == 2000


def test_json_lines_larger_than_a_document_are_read_whole() -> None:
    data = b"\n".join(line(dict(FIXTURES[0], flow_id=i)) for i in range(40))
    items = read(data, document=len(data) // 4)
    assert len(items) == 40 and all(isinstance(i, Alert) for i in items)


def test_a_line_longer_than_an_alert_keeps_its_head_length_and_hash() -> None:
    big = line(dict(FIXTURES[0], padding="x" * (3 * RECORD)))
    data = b"\n".join([line(FIXTURES[1]), big, line(FIXTURES[2])]) + b"\n"
    alert_1, letter, alert_3 = read(data)
    assert isinstance(alert_1, Alert) and isinstance(alert_3, Alert)  # the lines around it
    assert isinstance(letter, DeadLetter)
    assert letter.source == "in.jsonl:line 2"
    assert letter.original == big[:DEAD_LETTER_HEAD_BYTES]
    digest = hashlib.sha256(big).hexdigest()
    assert f"record of {len(big):,} bytes is over the {RECORD:,}" in letter.reason
    assert "runtime.max_alert_bytes" in letter.reason
    assert f"first {DEAD_LETTER_HEAD_BYTES:,} bytes" in letter.reason and digest in letter.reason
    # the same record from the same place is the same dead letter, a different one is not
    [again] = [i for i in read(data) if isinstance(i, DeadLetter)]
    other = data.replace(b"xxx", b"xxy", 1)
    [changed] = [i for i in read(other) if isinstance(i, DeadLetter)]
    assert again.id == letter.id != changed.id


def test_one_document_longer_than_an_alert_is_named_as_the_input() -> None:
    big = line(dict(FIXTURES[0], padding="x" * (2 * RECORD)))
    [letter] = read(big + b"\n")
    assert isinstance(letter, DeadLetter)
    assert letter.source == "in.jsonl"
    assert letter.original == big[:DEAD_LETTER_HEAD_BYTES]
    assert hashlib.sha256(big).hexdigest() in letter.reason


def test_an_array_element_longer_than_an_alert_keeps_only_its_head() -> None:
    element = dict(FIXTURES[0], padding="x" * (2 * RECORD))
    data = line([FIXTURES[1], element])
    alert, letter = read(data)
    assert isinstance(alert, Alert) and isinstance(letter, DeadLetter)
    whole = json.dumps(element, separators=(",", ":")).encode()
    assert letter.source == "in.jsonl:item 2"
    assert letter.original == whole[:DEAD_LETTER_HEAD_BYTES]
    assert hashlib.sha256(whole).hexdigest() in letter.reason


def test_a_document_larger_than_read_at_once_is_refused_whole() -> None:
    data = json.dumps([dict(FIXTURES[0], flow_id=i) for i in range(200)], indent=2).encode()
    [letter] = read(data, document=len(data) // 2)
    assert isinstance(letter, DeadLetter)
    assert letter.source == "in.jsonl"
    assert f"over the {len(data) // 2:,} bytes read at once (runtime.max_input_bytes)" in (
        letter.reason
    )
    assert "nothing in it was processed" in letter.reason and "one alert per line" in letter.reason
    assert letter.original == data[:DEAD_LETTER_HEAD_BYTES]
