"""Bytes to alerts: decode, split into records, normalise each, dead-letter the rest.

A payload is one JSON document, a JSON array of records, or JSON lines. Each
record is normalised on its own, so one bad record costs one dead letter and the
others still become alerts. Decisions the rest of the pipeline relies on:

- Encoding: UTF-8 (a BOM is accepted), or UTF-16/UTF-32 with a BOM. Anything
  else is one dead letter holding the exact input bytes.
- Dead-letter `original`: the exact input bytes for a whole payload or a JSON
  line (re-encoded as UTF-8 when the payload was UTF-16/32); for an element of a
  JSON array, the element re-serialised as compact UTF-8 JSON (the array's bytes
  cannot be cut per element). A record larger than one alert may be
  (`max_record_bytes`) is too large to keep whole: its dead letter keeps the first
  `DEAD_LETTER_HEAD_BYTES` and names the record's length and sha256.
- An empty payload is a dead letter; an empty JSON array holds no record and
  yields nothing.
- A payload that is not one JSON document is read as JSON lines only if more
  than one line is non-blank and at least one line is a JSON object on its own;
  otherwise it is a single broken document (e.g. truncated pretty-printed JSON)
  and becomes one dead letter with the parser's reason.
- Whole API responses are split into one record per alert: a GuardDuty or
  Security Hub `GetFindings` body (`{"Findings": [...]}`), an EventBridge
  event holding several Security Hub findings, and a Falcon Alerts API
  response (`{"meta", "resources": [...]}`).
- Oversized values never fail the batch: titles and descriptions are truncated
  with a marker and entities past the cap are counted in a label; an id too long
  to store is a dead letter (truncating it would break stable ids).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from soc_agent.errors import NormalizationError, RecordFiltered
from soc_agent.ingest import asff, crowdstrike_alert, guardduty
from soc_agent.ingest.detect import normalize
from soc_agent.ingest.mapping import FieldMapping
from soc_agent.models import Alert, DeadLetter
from soc_agent.models.alert import MAX_ENTITIES
from soc_agent.models.ids import dead_letter_id

__all__ = [
    "DEAD_LETTER_HEAD_BYTES",
    "JSON_SPACE_BYTES",
    "IngestResult",
    "Letters",
    "Normalising",
    "TooManyRecords",
    "iter_payload",
    "parse_payload",
]

# What JSON calls whitespace (RFC 8259); Python's strip() also takes U+001C-U+001F,
# U+00A0 and more, which would skip a garbage line instead of dead-lettering it.
_JSON_SPACE = " \t\r\n"
JSON_SPACE_BYTES = _JSON_SPACE.encode()

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Filtered:
    """A record a mapping's `keep` conditions left out: counted, neither decided nor kept."""

    source: str
    mapping: str
    reason: str


@dataclass
class IngestResult:
    """What one payload produced, one per input record: alerts, dead letters, and records
    a mapping filtered out."""

    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    filtered: list[Filtered] = field(default_factory=list)


@dataclass(frozen=True)
class _Record:
    source: str
    raw: bytes
    value: Any = None
    error: str | None = None


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding)
    return data.decode("utf-8")


def _encoding_reason(data: bytes, exc: UnicodeDecodeError) -> str:
    byte = data[exc.start] if exc.start < len(data) else None
    at = f" (byte 0x{byte:02x} at offset {exc.start})" if byte is not None else ""
    return (
        f"payload is not valid {exc.encoding.upper()}: {exc.reason}{at}; "
        "send UTF-8, or UTF-16 with a byte-order mark"
    )


def _json_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {str(exc)[:200]}"


def _loads(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return None, _json_error(exc)


def _element_bytes(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")
    except (ValueError, RecursionError):
        return b""


_Line = tuple[int, bytes, Any, str | None]  # line number, exact bytes, value, error


def _from_lines(lines: list[_Line], source: str, whole: _Record) -> Iterator[_Record]:
    """JSON lines if the payload looks like them, else the single broken `whole` record."""
    if len(lines) < 2 or not any(isinstance(value, dict) for _, _, value, _ in lines):
        yield whole
        return
    for n, raw, value, error in lines:
        where = f"{source}:line {n}"
        if error is not None:
            yield _Record(where, raw, error=f"line {n}: {error}")
        else:
            yield _Record(where, raw, value)


def _undecodable(data: bytes, source: str, exc: UnicodeDecodeError) -> Iterator[_Record]:
    """Bad bytes: in JSON lines only the lines holding them are lost."""
    lines: list[_Line] = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip(JSON_SPACE_BYTES):
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as line_exc:
            lines.append((n, raw, None, _encoding_reason(raw, line_exc)))
        else:
            lines.append((n, raw, *_loads(text)))
    yield from _from_lines(lines, source, _Record(source, data, error=_encoding_reason(data, exc)))


def _records(data: bytes, source: str) -> Iterator[_Record]:
    try:
        text = _decode(data)
    except UnicodeDecodeError as exc:
        yield from _undecodable(data, source, exc)
        return
    if not text.strip(_JSON_SPACE):
        yield _Record(source, data, error="empty payload: no JSON record in it")
        return
    whole, error = _loads(text)
    if error is None:
        if isinstance(whole, list):
            for index, element in enumerate(whole, 1):
                yield _Record(f"{source}:item {index}", _element_bytes(element), element)
        else:
            yield _Record(source, data, whole)
        return
    if "\x00" in text:
        error = "payload is not UTF-8 JSON: it holds NUL bytes (UTF-16 without a byte-order mark?)"
    # Re-encoding a decoded line gives back its exact bytes when the payload was UTF-8.
    lines: list[_Line] = [
        (n, line.encode("utf-8"), *_loads(line))
        for n, line in enumerate(text.split("\n"), 1)
        if line.strip(_JSON_SPACE)
    ]
    yield from _from_lines(lines, source, _Record(source, data, error=error))


# Whole API responses that hold several alerts, and what one element is called.
_EXPANDERS: tuple[tuple[Callable[[dict[str, Any]], list[Any] | None], str], ...] = (
    (asff.expand, "finding"),
    (guardduty.expand, "finding"),
    (crowdstrike_alert.expand, "alert"),
)


def _expand(record: _Record) -> list[_Record]:
    if isinstance(record.value, dict):
        for expand, element in _EXPANDERS:
            found = expand(record.value)
            if found:
                return [
                    _Record(f"{record.source}:{element} {i}", _element_bytes(one), one)
                    for i, one in enumerate(found, 1)
                ]
    return [record]


def _valid_unicode(value: Any) -> str | None:
    """JSON may escape lone surrogates (\\ud800), which no UTF-8 consumer downstream accepts."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "record contains invalid Unicode (a lone surrogate escape such as \\ud800)"
    except (ValueError, RecursionError):
        return "record is nested too deeply"
    return None


class TooManyRecords(NormalizationError):
    """The payload holds more records than the caller accepts in one go."""


DEAD_LETTER_HEAD_BYTES = 64 * 1024
"""What a dead letter keeps of a record too large to be an alert: its first bytes."""


@dataclass(frozen=True)
class Letters:
    """How dead letters are made for one input: its headers, format hint and clock."""

    received_at: Callable[[], datetime]
    headers: dict[str, str] = field(default_factory=dict)
    format_hint: str | None = None

    def dead(self, reason: str, raw: bytes, where: str) -> DeadLetter:
        return DeadLetter(
            id=dead_letter_id(where, raw),
            reason=reason,
            source=where,
            original=raw,
            headers=self.headers,
            format_hint=self.format_hint,
            received_at=self.received_at(),
        )

    def oversized(
        self, where: str, head: bytes, length: int, sha256: str, limit: int
    ) -> DeadLetter:
        """A record over the alert size: too large to keep whole, so its head, size and hash."""
        kept = head[:DEAD_LETTER_HEAD_BYTES]
        letter = self.dead(
            f"record of {length:,} bytes is over the {limit:,} one alert may have "
            f"(runtime.max_alert_bytes): not normalised, and too large to keep whole: the "
            f"dead letter keeps its first {len(kept):,} bytes; sha256 of the record {sha256}",
            kept,
            where,
        )
        # The id stands for the whole record, as for any other dead letter.
        return letter.model_copy(
            update={"id": dead_letter_id(where, f"{length}:{sha256}".encode())}
        )


@dataclass(frozen=True)
class Normalising:
    """What the caller decided about turning records into alerts."""

    format_hint: str | None = None
    mappings: Sequence[FieldMapping] = ()
    max_record_bytes: int | None = None
    max_entities: int = MAX_ENTITIES

    def items(self, record: _Record, letters: Letters) -> Iterator[Alert | DeadLetter | Filtered]:
        """One outer record as alerts and dead letters (a GetFindings envelope is several)."""
        letter = self.rejected(record, letters)
        if letter is not None:
            yield letter
            return
        for one in _expand(record):
            yield self.normalised(one, letters)

    def rejected(self, record: _Record, letters: Letters) -> DeadLetter | None:
        """The dead letter of a record that is not even read: unparsable or too large."""
        if record.error is not None:
            return letters.dead(record.error, record.raw, record.source)
        limit = self.max_record_bytes
        if limit is not None and len(record.raw) > limit:
            digest = hashlib.sha256(record.raw).hexdigest()
            return letters.oversized(record.source, record.raw, len(record.raw), digest, limit)
        return None

    def normalised(self, record: _Record, letters: Letters) -> Alert | DeadLetter | Filtered:
        problem = _valid_unicode(record.value)
        if problem is not None:
            return letters.dead(problem, record.raw, record.source)
        try:
            return normalize(
                record.value,
                format_hint=self.format_hint,
                mappings=self.mappings,
                received_at=letters.received_at(),
                max_entities=self.max_entities,
            )
        except NormalizationError as exc:
            return letters.dead(str(exc), record.raw, record.source)
        except RecordFiltered as exc:
            return Filtered(record.source, exc.mapping, exc.reason)


def iter_payload(
    data: bytes,
    *,
    source: str,
    format_hint: str | None = None,
    mappings: Sequence[FieldMapping] = (),
    headers: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
    max_records: int | None = None,
    max_record_bytes: int | None = None,
    max_entities: int = MAX_ENTITIES,
) -> Iterator[Alert | DeadLetter | Filtered]:
    """`parse_payload`, one alert, dead letter or filtered record at a time, in input order."""
    received = received_at or datetime.now(UTC)
    letters = Letters(
        lambda: received, {str(k): str(v) for k, v in (headers or {}).items()}, format_hint
    )
    how = Normalising(format_hint, mappings, max_record_bytes, max_entities)
    seen = 0
    for outer in _records(data, source):
        letter = how.rejected(outer, letters)
        expanded = [] if letter is not None else _expand(outer)
        seen += len(expanded) or 1
        if max_records is not None and seen > max_records:
            raise TooManyRecords(f"more than {max_records} records in one payload")
        if letter is not None:
            yield letter
        for record in expanded:
            yield how.normalised(record, letters)


def parse_payload(
    data: bytes,
    *,
    source: str,
    format_hint: str | None = None,
    mappings: Sequence[FieldMapping] = (),
    headers: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
    max_records: int | None = None,
    max_record_bytes: int | None = None,
    max_entities: int = MAX_ENTITIES,
) -> IngestResult:
    """Turn a payload into alerts and dead letters; every input record ends in one of the
    two, or, when a mapping's `keep` conditions leave it out, is counted as filtered.

    With `max_records`, a payload holding more records raises TooManyRecords as soon
    as the count is passed, before the rest is normalised. A record larger than
    `max_record_bytes` is dead-lettered instead of normalised, keeping its first
    `DEAD_LETTER_HEAD_BYTES` bytes and naming its length and sha256. An alert keeps
    its first `max_entities` entities and counts the rest in its labels.
    """
    result = IngestResult()
    for item in iter_payload(
        data,
        source=source,
        format_hint=format_hint,
        mappings=mappings,
        headers=headers,
        received_at=received_at,
        max_records=max_records,
        max_record_bytes=max_record_bytes,
        max_entities=max_entities,
    ):
        if isinstance(item, Alert):
            result.alerts.append(item)
        elif isinstance(item, Filtered):
            result.filtered.append(item)
        else:
            result.dead_letters.append(item)
    return result
