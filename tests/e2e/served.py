"""A deployment driven only through the CLI: `run` fills the store, `tokens create` makes
credentials, `soc-agent serve` runs as a real process on a free loopback port.

Used by the CLI `serve` tests and the browser tests. The pipeline queues the
fixture malware incident's two proposals at autonomy level 2: `isolate_host
ws-eng-007` (high risk, two senior approvers) and `quarantine_file <hash>`
(medium risk, one analyst).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from soc_agent.api.credentials.tokens_sqlite import SQLiteTokenStore
from soc_agent.models import Role

__all__ = ["ROOT", "Served", "cli", "start_served"]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "pipeline"
ALERT = FIXTURES / "alerts" / "crowdstrike_ws-eng-007_known_malware_high.json"
ROLES = {"vic": "viewer", "alice": "analyst", "sam": "senior", "sue": "senior", "ada": "admin"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
    env["SOC_AGENT_ANALYST"] = "ops-test"
    return env


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soc_agent", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    root: Path
    url: str
    process: subprocess.Popen[str]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def store_args(self) -> list[str]:
        return ["--store", str(self.root / "soc.db"), "--config", str(self.root / "soc.yaml")]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def api(self, method: str, path: str, who: str | None = None, **kw: Any) -> httpx.Response:
        headers = self.auth(who) if who else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def proposal_id(self, action: str) -> str:
        items = self.api("GET", "/api/v1/proposals", "vic").json()["items"]
        (found,) = [p["id"] for p in items if p["request"]["action"] == action]
        return str(found)

    def journal(self) -> list[tuple[str, str]]:
        path = self.root / "containment.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [(e["action"], e["target"]) for e in map(json.loads, lines)]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _config(root: Path, playbook: str, llm: dict[str, Any] | None) -> str:
    doc: dict[str, Any] = {
        "shipped_playbooks": False,
        "playbooks": [str(FIXTURES / "playbooks" / f"{playbook}.yaml")],
        "connectors": {
            "threat_intel": {"path": str(FIXTURES / "intel.yaml")},
            "asset_inventory": {"path": str(FIXTURES / "inventory.yaml")},
            "event_store": {"path": str(FIXTURES / "events.jsonl")},
            "containment": {"journal": str(root / "containment.jsonl")},
            "notifier": {"outbox": str(root / "notifications.jsonl")},
        },
        "policy": {"agent_autonomy": 2, "four_eyes_min_risk": "high"},
        "data_dirs": [str(FIXTURES)],
    }
    if llm is not None:
        doc["llm"] = llm
    return json.dumps(doc)  # JSON is YAML


async def _make_tokens(path: Path, names: list[str]) -> dict[str, str]:
    store = SQLiteTokenStore(path)
    try:
        return {n: await store.create(n, Role(ROLES[n]), datetime.now(UTC)) for n in names}
    finally:
        store.close()


def start_served(
    root: Path, *, playbook: str = "endpoint-malware", llm: dict[str, Any] | None = None
) -> Served:
    """Fill a store with `soc-agent run`, create a token per role, start `soc-agent serve`.

    `llm`: the `llm:` settings (a model on loopback) for a playbook that uses one.
    """
    (root / "soc.yaml").write_text(_config(root, playbook, llm), encoding="utf-8")
    store = ["--store", str(root / "soc.db"), "--config", str(root / "soc.yaml")]
    ran = cli("run", "--alerts", str(ALERT), *store, cwd=root)
    assert ran.returncode == 0, ran.stderr
    # One token through the CLI (as an operator makes them), the rest through the same
    # token store in-process: each CLI start costs half a second.
    made = cli("tokens", "create", "--name", "alice", "--role", "analyst", *store, cwd=root)
    assert made.returncode == 0, made.stderr
    tokens = {"alice": made.stdout.strip()}
    # A thread of its own: Playwright's sync API leaves its event loop marked running.
    with ThreadPoolExecutor(1) as pool:
        missing = [n for n in ROLES if n not in tokens]
        tokens.update(pool.submit(asyncio.run, _make_tokens(root / "soc.db", missing)).result())
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "soc_agent",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *store,
        ],
        cwd=root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(root, f"http://127.0.0.1:{port}", process, tokens)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"soc-agent serve exited: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            if httpx.get(served.url + "/healthz", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise RuntimeError("soc-agent serve did not become healthy within 30 s")
        time.sleep(0.1)
