"""Large alerts through `soc-agent run`: wall time, peak memory and what was capped.

The outside review sent alerts of 100,000 entities and about 30 MB and saw minutes
and over a gigabyte. Each run here is a fresh `soc-agent run --json` process on a
fresh store, measured on its own (wall time, the process's peak RSS); the
normal-size sample measured in the same run is the reference. Two shapes:

  * sign-in: the Microsoft Graph impossible-travel sample padded with IP evidence
    records as Graph writes them (about 300 bytes each: 100,000 make 30 MB);
  * c2: an Elastic Security C2 alert naming the entities in its ECS lists
    (`host.name`, `destination.ip`), which every entity passes through.

Each runs under the default caps and, when those refuse it whole, again with
`runtime.max_alert_bytes` raised to admit it, which shows the entity cap at work.
The last line feeds 30 MB of normal alerts as JSON lines and reports when the first
decision came out and the memory by then: a reader that parses the whole input first
holds every alert before it decides any.

    .venv/bin/python bench/bench_large_alert.py --entities 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "alerts"
RAISED = 64 * 1024 * 1024


def _ip(i: int) -> str:
    return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


def sign_in(entities: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / "ms_graph_impossible_travel.json").read_text())
    doc["id"] = f"{doc['id']}-large"
    doc["evidence"] = [
        *doc["evidence"],
        *(
            {
                "@odata.type": "#microsoft.graph.security.ipEvidence",
                "createdDateTime": "2026-11-20T14:02:17.1234567Z",
                "verdict": "unknown",
                "remediationStatus": "none",
                "roles": [],
                "tags": [],
                "ipAddress": _ip(i),
                "countryLetterCode": "NL",
                "location": {"city": "Amsterdam", "countryName": "Netherlands", "state": "NH"},
            }
            for i in range(entities)
        ),
    ]
    return doc


def c2(entities: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / "elastic_bruteforce.json").read_text())
    doc["kibana.alert.uuid"] = f"{doc['kibana.alert.uuid'][:-5]}large"
    doc["kibana.alert.rule.name"] = "ET MALWARE Cobalt Strike Beacon Observed"
    half = entities // 2
    doc["host"] = {"name": [f"ws-{i:06d}" for i in range(half)]}
    doc["destination"] = {"ip": [f"203.0.{i // 256 % 256}.{i % 256}" for i in range(half)]}
    return doc


# The child is started by a small process of its own: a child's peak RSS counts what it
# shared with its parent before exec, and this one holds the 30 MB alert it just wrote.
_MEASURED = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "seconds = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(f'{code} {seconds} {peak}')\n"
)


def _run(alerts: Path, store: Path, env: dict[str, str]) -> tuple[float, float, Path, Path]:
    """(seconds, peak RSS MiB, stdout, stderr) of one `soc-agent run --json`."""
    out, err, figures = (store.with_suffix(s) for s in (".out", ".err", ".figures"))
    command = [sys.executable, "-m", "soc_agent", "run", "--json", "--alerts", str(alerts),
               "--store", str(store)]  # fmt: skip
    with out.open("wb") as stdout, err.open("wb") as stderr:
        subprocess.run(
            [sys.executable, "-c", _MEASURED, str(figures), *command],
            stdout=stdout,
            stderr=stderr,
            env=env,
            check=True,
        )
    code, seconds, peak = figures.read_text().split()
    if int(code) not in (0, 1):
        raise SystemExit(f"soc-agent run failed: {err.read_text()[-2000:]}")
    return float(seconds), int(peak) / 1024, out, err


def _capped(out: Path, err: Path) -> str:
    """What was capped and what was decided, from the run's JSON output."""
    decisions = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    letters = [
        json.loads(line)["dead_letter"]
        for line in err.read_text().splitlines()
        if line.startswith('{"dead_letter"')
    ]
    said: list[str] = []
    for letter in letters:
        reason = letter["reason"].split("; sha256")[0]  # the hash says nothing here
        said.append(f"dead letter ({letter['bytes']:,} bytes kept): {reason}")
    for decision in decisions:
        for entry in decision["breakdown"]:
            if entry["rule"] == "ingest.entities_truncated":
                said.append(entry["reason"])
        counts = Counter(a["disposition"] for a in decision["actions"])
        said.append(
            f"{len(decision['actions'])} action(s): "
            + (", ".join(f"{n} {d}" for d, n in sorted(counts.items())) or "none")
        )
    return "\n".join(f"{'':<4}{line}" for line in said) or "    nothing"


def measure(name: str, doc: dict[str, Any], work: Path, env: dict[str, str]) -> float:
    alerts = work / f"{name}.json"
    alerts.write_text(json.dumps(doc))
    size = alerts.stat().st_size
    seconds, peak, out, err = _run(alerts, work / f"{name}.db", env)
    print(f"{name:<38} {size / 1e6:6.1f} MB {seconds:7.2f} s {peak:7.0f} MiB")
    print(_capped(out, err))
    return seconds


def first_decision(work: Path, megabytes: float, env: dict[str, str]) -> None:
    """Seconds and peak RSS until the first decision of a large JSON-lines input."""
    lines = (SAMPLES / "suricata_c2.jsonl").read_text().splitlines()
    base = [json.loads(line) for line in lines if line.strip()]
    path = work / "storm.jsonl"
    written = count = 0
    with path.open("w") as fh:
        while written < megabytes * 1e6:
            doc = dict(base[count % len(base)], flow_id=count)
            line = json.dumps(doc) + "\n"
            fh.write(line)
            written += len(line)
            count += 1
    command = [sys.executable, "-m", "soc_agent", "run", "--json", "--alerts", str(path),
               "--store", str(work / "storm.db")]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert child.stdout is not None
    child.stdout.readline()
    seconds = time.perf_counter() - start
    status = Path(f"/proc/{child.pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    child.kill()  # the rest would take minutes: only the wait for the first one matters
    child.wait()
    print(
        f"{'JSON lines, ' + format(count, ',') + ' alerts':<38} {written / 1e6:6.1f} MB "
        f"{seconds:7.2f} s {peak / 1024:7.0f} MiB\n    until the first decision"
    )


def for_each_renders(items: int) -> None:
    """A for_each step's args rendered for `items` items: per item over everything, or not."""
    try:
        from soc_agent.ingest import normalize
        from soc_agent.models import Incident
        from soc_agent.playbooks.context import build_context
        from soc_agent.playbooks.templates import ItemTemplates, render
    except ImportError:
        return  # a checkout from before ItemTemplates: nothing to compare
    alert = normalize(c2(2 * items))
    incident = Incident(
        id="inc-bench",
        title=alert.title,
        severity=alert.severity,
        alert_ids=[alert.id],
        entities=alert.entities,
        first_seen=alert.created_at,
        last_seen=alert.created_at,
    )
    ctx = build_context(alert, incident)
    lookups = [
        {"item": ip, "ok": True, "result": {"verdict": "unknown"}} for ip in ctx["alert"]["ips"]
    ]
    ctx["steps"] = {"intel": {"ok": True, "result": lookups}}
    args = {
        "indicator": "${item}",
        "type": "ip",
        "around": "${alert.created_at}",
        "host": "${alert.hosts[0]}",
        "why": "${alert.severity} ${size(steps.intel.result)}",
    }
    hosts = [f"ws-{i:06d}" for i in range(items)]
    start = time.perf_counter()
    every = [render(args, {**ctx, "item": item}) for item in hosts]
    per_item = time.perf_counter() - start
    start = time.perf_counter()
    templates = ItemTemplates(args, ctx)
    shared = [templates.render(item) for item in hosts]
    once = time.perf_counter() - start
    assert shared == every
    print(
        f"{'for_each args, ' + format(items, ',') + ' items':<38} {'':>9} {once:7.2f} s\n"
        f"    the shared part once; the whole context per item took {per_item:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--lines-mb", type=float, default=30.0, help="JSON-lines input size")
    args = parser.parse_args()
    # PYTHONPATH passes through, so another checkout's code can be measured the same way.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")}
    env["SOC_AGENT_LOG_LEVEL"] = "ERROR"
    raised = dict(env, SOC_AGENT_RUNTIME__MAX_ALERT_BYTES=str(RAISED))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{'input':<38} {'size':>9} {'wall':>9} {'peak RSS':>11}")
        normal = json.loads((SAMPLES / "ms_graph_impossible_travel.json").read_text())
        reference = measure("normal sign-in", normal, work, env)
        for shape, build in (("sign-in", sign_in), ("c2", c2)):
            doc = build(args.entities)
            name = f"{shape} {args.entities:,} entities"
            measure(name, doc, work, env)
            if len(json.dumps(doc)) > 5 * 1024 * 1024:
                seconds = measure(f"{name}, cap raised", doc, work, raised)
                print(f"{'':<4}{seconds / reference:.1f}x the normal alert's time")
        first_decision(work, args.lines_mb, env)
    for_each_renders(200)


if __name__ == "__main__":
    main()
