"""Small helpers behind the `worker` command, so the CLI stays thin."""

from __future__ import annotations

from soc_agent.runtime.kafka.metrics import WorkerReport

__all__ = ["parse_listen", "worker_summary"]


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT` for all interfaces) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--webhook wants HOST:PORT, e.g. 0.0.0.0:8081 (got {text!r})")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - the operator asked for it


def worker_summary(report: WorkerReport) -> str:
    outcomes = ", ".join(f"{n} {name}" for name, n in sorted(report.outcomes.items()))
    return (
        f"worker stopped: {report.records} record(s), {report.alerts} alert(s)"
        f"{f' ({outcomes})' if outcomes else ''}, {report.dead_letters} dead letter(s), "
        f"{report.filtered} filtered, "
        f"{sum(report.approvals.values())} verdict(s), "
        f"{sum(report.closings.values())} closing(s), {report.commits} commit(s)"
    )
