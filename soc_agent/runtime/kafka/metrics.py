"""What a worker measures about itself, and its Prometheus text exposition.

Pure state and formatting, no I/O besides reading the process's RSS: the
worker fills a `WorkerSnapshot`, `render_metrics` turns it into the text
format (version 0.0.4) that Prometheus scrapes. Labels carry only
configuration (topic names, partitions) and fixed vocabularies (outcomes,
verdict results): never alert content or secrets.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "BrokerContact",
    "Histogram",
    "WorkerReport",
    "WorkerSnapshot",
    "process_rss_bytes",
    "render_metrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds from fetch to every output acknowledged: a cached redelivery takes
# milliseconds, an investigation calling slow connectors can take a minute.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


class Histogram:
    """A cumulative-on-render histogram; `observe` is O(log buckets) and allocation-free."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("histogram buckets must be distinct and ascending")
        self.buckets = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf only
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = less or equal).
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (+inf, count)."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.buckets, math.inf), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def copy(self) -> Histogram:
        other = Histogram(self.buckets)
        other._counts = list(self._counts)
        other.sum, other.count = self.sum, self.count
        return other


class BrokerContact:
    """The outcome of the worker's latest exchange with the brokers, for /readyz.

    Commits, publishes and the health probe report here; the latest report
    wins, so readiness returns as soon as anything reaches the brokers again.
    Only the error's type is kept: messages can carry addresses and hostnames.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.ok = True  # the clients started, so the brokers answered once
        self.error: str | None = None
        self.since = clock()
        self.failures = 0

    def succeeded(self) -> None:
        if not self.ok:
            self.ok, self.error, self.since = True, None, self._clock()

    def failed(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        self.error = f"{what} failed ({type(exc).__name__})"
        if self.ok:
            self.ok, self.since = False, self._clock()

    def age(self) -> float:
        """Seconds since the state last changed."""
        return max(0.0, self._clock() - self.since)


@dataclass
class WorkerReport:
    """Counts only, so memory stays flat however long the worker runs."""

    records: int = 0
    alerts: int = 0
    dead_letters: int = 0
    filtered: int = 0
    approvals: dict[str, int] = field(default_factory=dict)
    closings: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    commit_failures: int = 0
    pauses: int = 0
    max_in_flight_seen: int = 0
    dropped_on_revoke: int = 0


@dataclass(frozen=True)
class WorkerSnapshot:
    """A consistent copy of the worker's state at one instant, for /readyz and /metrics."""

    report: WorkerReport
    in_flight: int
    in_flight_limit: int
    paused: bool
    running: bool
    loop_age: float  # seconds since the consume loop last came round
    assigned: tuple[tuple[str, int], ...]
    in_group: bool | None  # None: the client does not say
    broker_ok: bool
    broker_error: str | None
    broker_state_age: float
    latency: Histogram
    committed: Mapping[tuple[str, int], int] = field(default_factory=dict)
    publish_retries: int = 0
    producer_renewals: int = 0


def process_rss_bytes() -> int | None:
    """Resident set size now (Linux `/proc/self/statm`); None where that is not available."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def render_metrics(s: WorkerSnapshot, *, rss_bytes: int | None = None) -> str:
    """The snapshot in the Prometheus text format, one family per metric."""
    out = _Exposition()
    r = s.report
    out.counter("soc_worker_records_consumed_total", "Input records taken in.", r.records)
    out.counter("soc_worker_alerts_processed_total", "Alerts decided.", r.alerts)
    out.counter("soc_worker_dead_letters_total", "Records dead-lettered.", r.dead_letters)
    out.counter(
        "soc_worker_records_filtered_total",
        "Records a mapping's keep conditions left out (not alerts, not dead letters).",
        r.filtered,
    )
    out.family(
        "soc_worker_decisions_total",
        "counter",
        "Alerts answered, by correlation outcome.",
        (({"outcome": k}, v) for k, v in sorted(r.outcomes.items())),
    )
    out.family(
        "soc_worker_approvals_total",
        "counter",
        "Analyst verdicts consumed, by what they did.",
        (({"result": k}, v) for k, v in sorted(r.approvals.items())),
    )
    out.family(
        "soc_worker_closings_total",
        "counter",
        "Analyst closings consumed, by what they did.",
        (({"result": k}, v) for k, v in sorted(r.closings.items())),
    )
    out.counter("soc_worker_commits_total", "Offset commits that succeeded.", r.commits)
    out.counter(
        "soc_worker_commit_failures_total",
        "Commits that failed or timed out (retried at the next interval).",
        r.commit_failures,
    )
    out.counter("soc_worker_pauses_total", "Times fetching paused at max_in_flight.", r.pauses)
    out.counter(
        "soc_worker_dropped_on_revoke_total",
        "Records cancelled uncommitted when their partition was revoked.",
        r.dropped_on_revoke,
    )
    out.counter(
        "soc_worker_publish_retries_total",
        "Output batches sent again after a transient broker error.",
        s.publish_retries,
    )
    out.counter(
        "soc_worker_producer_renewals_total",
        "Producers replaced because their idempotence state broke (after an outage).",
        s.producer_renewals,
    )
    out.gauge("soc_worker_in_flight", "Records being processed now.", s.in_flight)
    out.gauge(
        "soc_worker_in_flight_max",
        "Most records in processing at once so far.",
        r.max_in_flight_seen,
    )
    out.gauge("soc_worker_in_flight_limit", "kafka.max_in_flight.", s.in_flight_limit)
    out.gauge("soc_worker_paused", "1 while fetching is paused by backpressure.", int(s.paused))
    per_topic: dict[str, int] = {}
    for topic, _ in s.assigned:
        per_topic[topic] = per_topic.get(topic, 0) + 1
    out.family(
        "soc_worker_assigned_partitions",
        "gauge",
        "Partitions assigned to this worker, by topic.",
        (({"topic": t}, n) for t, n in sorted(per_topic.items())),
    )
    out.family(
        "soc_worker_committed_offset",
        "gauge",
        "The last offset this worker committed, per assigned partition.",
        (({"topic": t, "partition": str(p)}, off) for (t, p), off in sorted(s.committed.items())),
    )
    out.histogram(
        "soc_worker_processing_seconds",
        "Seconds from fetching a record to every output of it acknowledged.",
        s.latency,
    )
    out.gauge(
        "soc_worker_loop_age_seconds", "Seconds since the consume loop last came round.", s.loop_age
    )
    out.gauge(
        "soc_worker_broker_up",
        "1 if the latest exchange with the brokers succeeded.",
        int(s.broker_ok),
    )
    if rss_bytes is not None:
        out.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss_bytes)
    return out.text()


class _Exposition:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self._lines += [f"{name}{_labels(labels)} {_num(v)}" for labels, v in samples]

    def counter(self, name: str, help_text: str, value: float) -> None:
        self.family(name, "counter", help_text, [({}, value)])

    def gauge(self, name: str, help_text: str, value: float) -> None:
        self.family(name, "gauge", help_text, [({}, value)])

    def histogram(self, name: str, help_text: str, h: Histogram) -> None:
        self.family(name, "histogram", help_text, [])
        for bound, n in h.cumulative():
            self._lines.append(f"{name}_bucket{_labels({'le': _num(bound)})} {n}")
        self._lines += [f"{name}_sum {_num(h.sum)}", f"{name}_count {h.count}"]

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() else repr(value)
