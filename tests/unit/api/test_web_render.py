"""What the web UI's templates print: no control or bidi character, whatever the value."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from soc_agent.api.web_render import templates

# The review's list: embeddings and overrides, isolates, the LRM/RLM marks, the Arabic mark.
BIDI = [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)), "\u200e", "\u200f"]
BIDI.append("\u061c")


class _Named:
    """A value that is not a string but prints as one (an exception, a path, an enum)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


@pytest.mark.parametrize("ch", BIDI, ids=lambda ch: f"U+{ord(ch):04X}")
@pytest.mark.parametrize("wrap", [str, _Named, ValueError], ids=["str", "object", "exception"])
def test_every_printed_value_shows_bidi_controls(ch: str, wrap: Callable[[str], object]) -> None:
    page = templates.env.from_string("<p>{{ value }}</p>").render(value=wrap(f"a{ch}b"))
    assert ch not in page
    assert f"a[U+{ord(ch):04X}]b" in page
