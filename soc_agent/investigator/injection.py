"""Text that tries to instruct the model: found, named and kept as a finding.

Alert fields and lookup results reach the model as data, but an attacker
controls much of that text (a process command line, an email subject, a user
agent). A match here does not stop the investigation; it is recorded on the
investigation and the policy then lets no action execute on it
(`guardrail.injection`), so a human decides. The patterns are the known
shapes: orders to ignore the instructions, role and chat-template markers,
tool-call syntax, and direct requests to call the alert benign. They are
heuristics with a bias toward false alarms, which cost a proposal, not a miss.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from soc_agent.models import Alert, Evidence

__all__ = ["MAX_STRINGS", "detect_injection"]

# Bounds the scan of a huge alert or lookup result; what is not scanned is said.
MAX_STRINGS = 20_000
_MAX_CHARS = 8_192
_EXCERPT = 60

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE | re.MULTILINE))
    for name, pattern in (
        (
            "instruction override",
            r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|"
            r"all|your|system|the)\b[^.\n]{0,20}\b(instructions?|prompts?|rules|directions|"
            r"guidelines|context)\b",
        ),
        ("new instructions", r"\b(new|updated|real|actual)\s+(instructions?|system\s+prompt)\b"),
        ("role marker", r"^\s*(system|assistant|developer)\s*:(\s|$)"),
        (
            "chat-template marker",
            r"<\|(im_start|im_end|system|user|assistant|start_header_id|end_header_id|eot_id)\|>"
            r"|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(system|instruction)",
        ),
        (
            "tool-call syntax",
            r"</?tool_call>|<function=|\"tool_calls\"\s*:|\"function_call\"\s*:"
            r"|\{\s*\"name\"\s*:\s*\"[^\"]{1,80}\"\s*,\s*\"arguments\"\s*:|\bfinal_result\b",
        ),
        (
            "verdict steering",
            r"\b(classify|mark|report|label|treat|consider|declare)\s+(this|the|it)\s*"
            r"(alert|incident|event|activity|detection|file|host)?\s+as\s+"
            r"(benign|safe|false[\s_-]?positive|harmless|clean|legitimate)\b"
            r"|\bdo\s+not\s+(escalate|isolate|contain|alert|report|flag)\b",
        ),
        ("persona switch", r"\byou\s+are\s+now\b|\bact\s+as\s+(an?\s+)?(admin|system|developer)"),
    )
)


def detect_injection(alert: Alert | None, evidence: Sequence[Evidence] = ()) -> list[str]:
    """Each place text tries to instruct the model: `where: pattern ('excerpt')`.

    Scans what the model is shown: the alert without its vendor original, and
    each evidence record's result and error.
    """
    roots: list[tuple[str, Any]] = []
    if alert is not None:
        roots.append(("alert", alert.model_dump(mode="json", exclude={"original"})))
    roots += [(f"evidence {e.step}", [e.result, e.error]) for e in evidence]
    hits: list[str] = []
    scanned = 0
    for root, value in roots:
        for path, text in _strings(root, value):
            scanned += 1
            if scanned > MAX_STRINGS:
                hits.append(f"{path}: not scanned (more than {MAX_STRINGS} strings)")
                return hits
            hit = _match(text)
            if hit is not None:
                hits.append(f"{path}: {hit}")
    return hits


def _match(text: str) -> str | None:
    head = text[:_MAX_CHARS]
    for name, pattern in _PATTERNS:
        found = pattern.search(head)
        if found is not None:
            excerpt = found.group(0).strip()[:_EXCERPT]
            return f"{name} ({excerpt!r})"
    return None


def _strings(path: str, value: Any) -> Iterator[tuple[str, str]]:
    """Every string under `value` (keys too: an attacker names fields), with its path."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield f"{where} (a key)", str(key)
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
