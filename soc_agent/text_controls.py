"""Characters that change how text around them reads, and a way to show them instead.

Control (Cc: C0, DEL, C1), format (Cf: bidi overrides, embeddings, isolates
and marks, zero-width characters) and the Unicode line and paragraph
separators. In attacker-chosen text (alert fields, analyst names, connector
errors) they retitle terminals or reverse how a file or host name reads, so
every output shows them as visible text: the CLI as `\\uXXXX`, the web UI as
`[U+XXXX]`. Newline and tab are kept.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

__all__ = ["replace_controls"]

_KEEP = frozenset("\n\t")
_SHOWN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def replace_controls(text: str, show: Callable[[str], str]) -> str:
    """`text` with each such character replaced by `show(character)`."""
    if text.isprintable():
        return text
    return "".join(
        show(ch) if ch not in _KEEP and unicodedata.category(ch) in _SHOWN else ch for ch in text
    )
