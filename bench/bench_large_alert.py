"""One large alert through `soc-agent run`: wall time and peak memory against a normal one.

The outside review sent a Microsoft Graph alert padded with 100,000 IP evidence
records (about 22 MB, under the per-alert cap when raised) and saw minutes and
over a gigabyte. Each run is a fresh `soc-agent run` process on a fresh store;
the normal-size sample measured in the same run is the ceiling reference.

    .venv/bin/python bench/bench_large_alert.py --evidence 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = (
    Path(__file__).resolve().parents[1] / "samples" / "alerts" / "ms_graph_impossible_travel.json"
)


def padded(evidence: int) -> dict[str, object]:
    doc = json.loads(SAMPLE.read_text())
    doc["id"] = f"{doc['id']}-large"
    doc["evidence"] = [
        *doc["evidence"],  # type: ignore[list-item]
        *(
            {
                "@odata.type": "#microsoft.graph.security.ipEvidence",
                "ipAddress": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                "verdict": "unknown",
            }
            for i in range(evidence)
        ),
    ]
    return doc


def measure(doc: dict[str, object], work: Path, name: str) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, summary line) of one `soc-agent run` on `doc`."""
    alerts = work / f"{name}.json"
    alerts.write_text(json.dumps(doc))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "soc_agent", "run", "--alerts", str(alerts), "--store",
         str(work / f"{name}.db")],
        env={"SOC_AGENT_RUNTIME__MAX_ALERT_BYTES": str(64 * 1024 * 1024), "PATH": ""},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    summary = next(line for line in run.stdout.splitlines() if "alert(s)" in line)
    return seconds, peak, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidence", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        normal = measure(json.loads(SAMPLE.read_text()), work, "normal")
        doc = padded(args.evidence)
        size = len(json.dumps(doc)) / 1e6
        large = measure(doc, work, "large")
    print(f"normal alert      : {normal[0]:6.2f} s  peak RSS {normal[1]:7.0f} MiB  {normal[2]}")
    print(
        f"large alert {size:4.1f} MB: {large[0]:6.2f} s  peak RSS {large[1]:7.0f} MiB  {large[2]}"
    )
    print(
        f"ratio             : {large[0] / normal[0]:6.1f}x time, {large[1] / normal[1]:.1f}x memory"
    )


if __name__ == "__main__":
    main()
