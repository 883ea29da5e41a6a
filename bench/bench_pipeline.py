"""Embedded pipeline benchmark: throughput, latency percentiles and memory.

Generates an alert storm (Suricata EVE alerts and CrowdStrike detections with
realistic entity overlap, plus duplicates), runs it through the whole embedded
pipeline into a fresh SQLite store, and compares against ceilings measured in
the same run on the same machine:
  * ingest ceiling: bytes -> canonical alerts only (parse_payload);
  * store ceiling: store writes of the same alerts and audit entries, no logic.
The pipeline can never beat either; the ratios say where the time goes.

    .venv/bin/python bench/bench_pipeline.py --alerts 2000
    .venv/bin/python bench/bench_pipeline.py --alerts 500 --elasticsearch http://127.0.0.1:9200

With `--elasticsearch` the store is the shared backend workers on several
machines use (indices under a fresh prefix, deleted afterwards), with the
cross-process leases and compare-and-set that backend takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from soc_agent_samples.storm import START, Pools, document

from soc_agent.ingest import parse_payload
from soc_agent.models import AuditEvent
from soc_agent.pipeline.agent import AlertOutcome
from soc_agent.runtime.backend import open_backend
from soc_agent.runtime.components import open_components
from soc_agent.runtime.embedded import run_embedded
from soc_agent.settings import Settings, load_settings

# Wider pools than the Kafka tests use: more, smaller incidents, as in a busy SOC.
STORM_POOLS = Pools(
    spacing_seconds=3,
    signatures=4,
    source_octets=250,
    destinations=60,
    tls_names=40,
    endpoints=120,
    users=300,
)


def make_storm(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines: list[str] = []
    for i in range(n):
        lines.append(json.dumps(document(i, rng, STORM_POOLS)))
        if i % 10 == 0:  # redelivered copies, as an at-least-once pipeline produces
            lines.append(lines[-1])
    return ("\n".join(lines) + "\n").encode()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _ceiling_store(data: bytes, settings: Settings) -> float:
    alerts = parse_payload(data, source="bench").alerts
    async with open_backend(settings) as backend:
        t0 = time.perf_counter()
        for a in alerts:
            await backend.store.save_alert(a, None)
            await backend.audit.append(
                AuditEvent(actor="bench", action="alert.correlate", subject=a.id, at=START)
            )
        elapsed = time.perf_counter() - t0
    return len(alerts) / elapsed


async def _pipeline(path: Path, settings: Settings) -> tuple[float, list[float], int, float]:
    """Alerts/s, latencies, alerts, and CPU seconds per alert (every thread of the process:
    on this machine the wall rate follows the CPU one, and CPU varies far less run to run)."""
    latencies: list[float] = []
    async with open_components(settings, inline_store=True) as c:  # as `soc-agent run`
        t0, cpu0 = time.perf_counter(), time.process_time()

        async def on_outcome(outcome: AlertOutcome) -> None:
            latencies.append(outcome.elapsed_ms / 1000)

        report = await run_embedded(c, [path], on_outcome=on_outcome)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return report.alerts / elapsed, latencies, report.alerts, cpu / report.alerts


def _settings(workdir: Path, name: str, es_url: str | None) -> Settings:
    if es_url is None:
        return load_settings(store=workdir / f"{name}.db")
    return load_settings(
        store=workdir / f"{name}.db",
        store_backend="elasticsearch",
        audit_key="bench-key-shared-by-every-worker-0123",
        elasticsearch={
            "hosts": [es_url],
            "index_prefix": f"bench-{name}-{uuid.uuid4().hex[:8]}",
            "number_of_replicas": 0,
        },
    )


async def _drop_indices(settings: Settings) -> None:
    if settings.store_backend != "elasticsearch":
        return
    async with settings.elasticsearch.client() as client:
        prefix = settings.elasticsearch.index_prefix
        names = list(await client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
        if names:
            await client.indices.delete(index=",".join(names))


def _child(path: Path, workdir: Path, es_url: str | None) -> int:
    """The pipeline alone in this process, reading the storm from its file, so the peak
    RSS printed is the pipeline's (the parent holds the whole storm for its ceilings)."""
    settings = _settings(workdir, "pipeline", es_url)
    try:
        rate, latencies, n, cpu = asyncio.run(_pipeline(path, settings))
    finally:
        asyncio.run(_drop_indices(settings))
    print(json.dumps({"rate": rate, "latencies": latencies, "n": n, "cpu": cpu, "rss": _peak_mb()}))
    return 0


def _peak_mb() -> float:
    """This process's peak RSS since its exec (VmHWM): `ru_maxrss` would report the
    parent's peak too, which Linux carries across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(path: Path, workdir: Path, es_url: str | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", str(path), "--workdir", str(workdir)]
    if es_url:
        command += ["--elasticsearch", es_url]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pipeline run failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--elasticsearch", metavar="URL", help="use this cluster as the store")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return _child(args.child, args.workdir, args.elasticsearch)
    data = make_storm(args.alerts)
    backend = "Elasticsearch" if args.elasticsearch else "SQLite"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        n_ingest = len(parse_payload(data, source="bench").alerts)
        ingest_rate = n_ingest / (time.perf_counter() - t0)
        ceiling = _settings(workdir, "ceiling", args.elasticsearch)
        try:
            store_rate = asyncio.run(_ceiling_store(data, ceiling))
        finally:
            asyncio.run(_drop_indices(ceiling))
        storm = workdir / "storm.jsonl"
        storm.write_bytes(data)
        ran = _run_child(storm, workdir, args.elasticsearch)
    rate, latencies, n, cpu = ran["rate"], ran["latencies"], ran["n"], ran["cpu"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"input: {len(data) / 1e6:.1f} MB, {n} alert records (incl. redeliveries)")
    print(f"ingest ceiling   : {ingest_rate:10.0f} alerts/s  (parse + normalise only)")
    print(f"store ceiling    : {store_rate:10.0f} alerts/s  ({backend} alert + audit writes only)")
    print(
        f"pipeline         : {rate:10.0f} alerts/s  "
        f"({rate / ingest_rate:.1%} of ingest ceiling, {rate / store_rate:.1%} of store ceiling)"
    )
    print(f"CPU per alert    : {cpu * 1000:10.1f} ms  (all threads; target 4 ms)")
    print(
        f"latency per alert: p50 {_pct(latencies, 50) * 1000:.1f} ms, "
        f"p95 {_pct(latencies, 95) * 1000:.1f} ms, p99 {_pct(latencies, 99) * 1000:.1f} ms, "
        f"mean {statistics.fmean(latencies) * 1000:.1f} ms (correlation to last action)"
    )
    print(
        f"peak RSS         : {ran['rss']:.0f} MB pipeline process (input streamed from its "
        f"file); {rss_mb:.0f} MB this process (holds the whole storm for the ceilings)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
