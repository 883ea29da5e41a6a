"""Text for an operator's terminal: no control or bidi character an attacker chose gets through.

Alert fields, dead-letter reasons, analyst names and connector errors are
attacker-controlled and reach `soc-agent` output. A raw ESC can retitle or
clear the terminal, rewrite what was printed or (with some emulators) feed
input back; a bidi override reverses how a file name or host reads. Every
such character is shown as a visible `\\uXXXX` escape instead, which is also a
valid JSON escape, so `--json` output stays parseable and unchanged in meaning.
"""

from __future__ import annotations

import io
from typing import TextIO

from soc_agent.text_controls import replace_controls

__all__ = ["TerminalSafeStream", "terminal_safe"]


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # as a UTF-16 surrogate pair, which JSON also reads back
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def terminal_safe(text: str) -> str:
    """`text` with every control, format and separator character escaped (newline and tab kept)."""
    return replace_controls(text, _escape)


class TerminalSafeStream(io.TextIOBase):
    """A text stream that passes everything written through `terminal_safe`."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(terminal_safe(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding
