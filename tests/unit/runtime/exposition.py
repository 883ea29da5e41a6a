"""A strict reader of the Prometheus text format (0.0.4), for tests of what a scraper sees.

It refuses what Prometheus would refuse or misread: a sample before its
family's TYPE, a family declared twice, a sample of an undeclared family, a
series twice, malformed names, labels or values, histogram buckets that are
not cumulative or whose +Inf bucket differs from `_count`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["Family", "parse"]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{(.*)\}})? (\S+)( -?\d+)?$")
_PAIR = re.compile(rf'({_LABEL})="((?:[^"\\]|\\.)*)"(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    type: str
    help: str = ""
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, suffix: str = "", **labels: str) -> float:
        return self.samples[(self.name + suffix, tuple(sorted(labels.items())))]

    def by(self, label: str, suffix: str = "") -> dict[str, float]:
        """Sample values keyed by one label's value."""
        return {
            dict(lbls)[label]: v
            for (name, lbls), v in self.samples.items()
            if name == self.name + suffix and label in dict(lbls)
        }


def _value(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"bad sample value {text!r}")
    return float(text)


def _labels(text: str) -> Labels:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None:
            raise ValueError(f"bad labels {text!r}")
        raw = m.group(2)
        value = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), raw)
        out.append((m.group(1), value))
        pos = m.end()
    names = [k for k, _ in out]
    if len(names) != len(set(names)):
        raise ValueError(f"label repeated in {text!r}")
    return tuple(sorted(out))


def _family_of(sample: str, families: dict[str, Family]) -> Family:
    if sample in families and families[sample].type != "histogram":
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in families and families[base].type == "histogram":
            return families[base]
    raise ValueError(f"sample {sample} has no declared family")


def parse(text: str) -> dict[str, Family]:
    if not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            if name in helps:
                raise ValueError(f"HELP twice for {name}")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            if not re.fullmatch(_NAME, name) or kind not in _TYPES:
                raise ValueError(f"bad TYPE line {line!r}")
            if name in families:
                raise ValueError(f"TYPE twice for {name}")
            families[name] = Family(name, kind, helps.get(name, ""))
        elif line.startswith("#"):
            continue
        else:
            m = _SAMPLE.match(line)
            if m is None:
                raise ValueError(f"bad sample line {line!r}")
            family = _family_of(m.group(1), families)
            key = (m.group(1), _labels(m.group(3) or ""))
            if key in family.samples:
                raise ValueError(f"series twice: {line!r}")
            family.samples[key] = _value(m.group(4))
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    buckets = sorted(
        (_value(dict(lbls)["le"]), v)
        for (name, lbls), v in family.samples.items()
        if name == family.name + "_bucket"
    )
    if not buckets or not math.isinf(buckets[-1][0]):
        raise ValueError(f"{family.name} has no +Inf bucket")
    counts = [v for _, v in buckets]
    if counts != sorted(counts):
        raise ValueError(f"{family.name} buckets are not cumulative: {buckets}")
    if counts[-1] != family.value("_count"):
        raise ValueError(f"{family.name}: +Inf bucket {counts[-1]} != _count")
    family.value("_sum")
