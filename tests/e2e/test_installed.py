"""An installed soc-agent works without the source tree: connectors, playbooks, samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("soc_agent-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "-q", str(wheel)], check=True, timeout=600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOC_AGENT_", "PYTHON"))}

    def installed(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command of the installed venv, run outside the source tree."""
        return subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=check,
        )

    run = installed("soc-agent", "run", "--json", check=False)
    assert run.returncode == 0, run.stderr
    playbooks = {json.loads(line)["playbook"] for line in run.stdout.splitlines()}
    assert "malware-on-endpoint" in playbooks and "triage-default" in playbooks
    assert "suspicious-sign-in" in playbooks  # from the shipped identity pack
    tested = installed("soc-agent", "playbooks", "test", check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.splitlines()[-1] == "22 passed, 0 failed"  # the packs' cases too
    listed = installed("soc-agent", "connectors", "list", "--json")
    names = {c["name"] for c in json.loads(listed.stdout)}
    assert {"threat_intel", "asset_inventory", "event_store", "containment", "notifier"} <= names
    # The YAML connectors, the example pack and the eval set travel in the wheel too.
    assert {"thehive", "servicenow_cmdb"} <= names
    pack = json.loads(installed("soc-agent", "packs", "show", "data-exfiltration", "--json").stdout)
    assert pack["playbooks"] == ["data-exfiltration"] and pack["test_cases"] == 2
    assert pack["mappings"] == ["acme-dlp"] and pack["connectors"] == ["case_api"]
    pack = json.loads(installed("soc-agent", "packs", "show", "identity", "--json").stdout)
    assert pack["playbooks"] == ["brute-force", "mfa-fatigue", "suspicious-sign-in"]
    assert pack["test_cases"] == 8 and pack["python_connectors"] == ["okta", "entra"]
    assert {"okta", "entra"} <= names
    scenarios = installed(
        "python", "-c", "from soc_agent.runtime.evaluation import "
        "load_scenarios, shipped_scenarios; print(len(load_scenarios(shipped_scenarios())))",
    )  # fmt: skip
    assert scenarios.stdout.strip() == "39"
