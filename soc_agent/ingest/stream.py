"""Files and stdin as a stream of records: JSON lines one at a time, anything else bounded.

An input whose first non-blank line is one JSON object on its own is JSON lines
(or that one document): it is read a line at a time, so memory stays flat however
large the input is and the first alert is decided before the rest is read. A line
longer than `max_record_bytes` is read through to its end without being kept and
dead-lettered with its first `DEAD_LETTER_HEAD_BYTES` bytes, its length and its
sha256. Any other input (a JSON array, a pretty-printed document, UTF-16) can only
be parsed whole: it is read up to `max_document_bytes` and goes through
`iter_payload`; a larger one is one dead letter saying so, and the rest of it is
left unread. For inputs within those bounds the records are exactly those
`parse_payload` makes of the same bytes (but that a UTF-8 byte-order mark never
costs the first line here).
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from soc_agent.ingest.mapping import FieldMapping
from soc_agent.ingest.payload import (
    DEAD_LETTER_HEAD_BYTES,
    JSON_SPACE_BYTES,
    Filtered,
    Letters,
    Normalising,
    _encoding_reason,
    _loads,
    _Record,
    iter_payload,
)
from soc_agent.models import Alert, DeadLetter
from soc_agent.models.alert import MAX_ENTITIES

__all__ = ["ByteStream", "read_records"]

_CHUNK = 1024 * 1024


class ByteStream(Protocol):
    """A binary file or stdin: the two calls the reader makes."""

    def readline(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class _Line:
    number: int
    raw: bytes  # as read: the line with its newline, or the first bytes of a longer one
    complete: bool

    @cached_property
    def content(self) -> bytes:
        """The line without its newline (and without a UTF-8 byte-order mark on line 1)."""
        text = self.raw[:-1] if self.raw.endswith(b"\n") else self.raw
        return text.removeprefix(codecs.BOM_UTF8) if self.number == 1 else text

    @property
    def blank(self) -> bool:
        # JSON whitespace only: a line of U+001C or U+00A0 is garbage to keep, not blank.
        return self.complete and not self.content.strip(JSON_SPACE_BYTES)


class _Reader:
    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.number = 0

    def line(self, limit: int) -> _Line | None:
        """The next line if it has at most `limit` bytes, else its first `limit + 1`."""
        raw = self._stream.readline(limit + 1)
        if not raw:
            return None
        self.number += 1
        return _Line(self.number, raw, raw.endswith(b"\n") or len(raw) <= limit)

    def finish(self, line: _Line) -> tuple[int, str]:
        """Read a line that was cut to its end; its length and sha256, newline excluded."""
        digest, length = hashlib.sha256(line.content), len(line.content)
        while chunk := self._stream.readline(_CHUNK):
            ends = chunk.endswith(b"\n")
            chunk = chunk[:-1] if ends else chunk
            digest.update(chunk)
            length += len(chunk)
            if ends:
                break
        return length, digest.hexdigest()

    def read(self, size: int) -> bytes:
        return self._stream.read(max(size, 0))


def read_records(
    stream: ByteStream,
    *,
    source: str,
    clock: Callable[[], datetime],
    max_record_bytes: int,
    max_document_bytes: int,
    format_hint: str | None = None,
    mappings: Sequence[FieldMapping] = (),
    max_entities: int = MAX_ENTITIES,
) -> Iterator[Alert | DeadLetter | Filtered]:
    """Every record of `stream` as an alert or a dead letter, in input order, read lazily."""
    how = Normalising(format_hint, mappings, max_record_bytes, max_entities)
    letters = Letters(clock, {}, format_hint)
    reader = _Reader(stream)
    consumed = bytearray()  # what was read before the input's shape is known
    first = _next_line(reader, max_record_bytes, consumed)
    if first is None or len(consumed) > max_document_bytes:
        yield from _whole(reader, consumed, first, source, how, clock, max_document_bytes)
        return
    value: Any = None
    if first.complete:
        value = _object(first.content)
        if value is None:  # not an object alone on its line: a document to parse whole
            yield from _whole(reader, consumed, first, source, how, clock, max_document_bytes)
            return
    elif not first.content.lstrip().startswith(b"{"):
        yield from _whole(reader, consumed, first, source, how, clock, max_document_bytes)
        return
    cut = None if first.complete else reader.finish(first)
    trailing = bytearray()
    second = _next_line(reader, max_record_bytes, trailing)
    if second is None:  # the one document: named as the input, as parse_payload names it
        if cut is not None:
            yield letters.oversized(source, first.content, *cut, max_record_bytes)
            return
        data = bytes(consumed + first.raw + trailing) if consumed or trailing else first.raw
        if consumed.strip(JSON_SPACE_BYTES) or trailing.strip(JSON_SPACE_BYTES):
            # Blank to the eye but not to JSON (a no-break space): parse_payload decides.
            yield from iter_payload(
                data,
                source=source,
                format_hint=format_hint,
                mappings=mappings,
                received_at=clock(),
                max_record_bytes=max_record_bytes,
                max_entities=max_entities,
            )
            return
        yield from how.items(_Record(source, data, value), letters)  # parsed once, not twice
        return
    where = f"{source}:line {first.number}"
    if cut is not None:
        yield letters.oversized(where, first.content, *cut, max_record_bytes)
    else:
        yield from how.items(_Record(where, first.content, value), letters)
    line: _Line | None = second
    while line is not None:
        yield from _line_items(reader, line, source, how, letters)
        line = _next_line(reader, max_record_bytes, None)


def _next_line(reader: _Reader, limit: int, blanks: bytearray | None) -> _Line | None:
    """The next non-blank line; the blank ones before it are appended to `blanks`."""
    while (line := reader.line(limit)) is not None:
        if not line.blank:
            return line
        if blanks is not None:
            blanks += line.raw
    return None


def _object(content: bytes) -> dict[str, Any] | None:
    """The JSON object a line holds on its own, or None."""
    try:
        value, error = _loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    return value if error is None and isinstance(value, dict) else None


def _line_items(
    reader: _Reader, line: _Line, source: str, how: Normalising, letters: Letters
) -> Iterator[Alert | DeadLetter | Filtered]:
    where, n = f"{source}:line {line.number}", line.number
    limit = how.max_record_bytes or 0
    if not line.complete:
        yield letters.oversized(where, line.content, *reader.finish(line), limit)
        return
    raw = line.content
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield letters.dead(f"line {n}: {_encoding_reason(raw, exc)}", raw, where)
        return
    value, error = _loads(text)
    record = _Record(where, raw, value, None if error is None else f"line {n}: {error}")
    yield from how.items(record, letters)


def _whole(
    reader: _Reader,
    consumed: bytearray,
    first: _Line | None,
    source: str,
    how: Normalising,
    clock: Callable[[], datetime],
    limit: int,
) -> Iterator[Alert | DeadLetter | Filtered]:
    """An input that is not JSON lines: parsed whole if it fits in `limit` bytes."""
    data = consumed + (first.raw if first is not None else b"")
    data += reader.read(limit + 1 - len(data))
    if len(data) > limit:
        # Left unread: a file stays where it is, and the sender of stdin is told why.
        letters = Letters(clock, {}, how.format_hint)
        head = bytes(data[:DEAD_LETTER_HEAD_BYTES])
        letter = letters.dead(
            f"input is over the {limit:,} bytes read at once (runtime.max_input_bytes) and "
            "is not JSON lines: nothing in it was processed and the rest was not read; split "
            f"it, or write one alert per line. The dead letter keeps its first {len(head):,} "
            "bytes",
            head,
            source,
        )
        yield letter
        return
    yield from iter_payload(
        bytes(data),
        source=source,
        format_hint=how.format_hint,
        mappings=how.mappings,
        received_at=clock(),
        max_record_bytes=how.max_record_bytes,
        max_entities=how.max_entities,
    )
