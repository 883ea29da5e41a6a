"""`playbooks test DIR` selects among the playbooks production would load, not DIR alone.

A responder's playbook could pass its own tests while production picked a
shipped playbook with a higher priority, and a playbook reusing a shipped
name loaded beside it without a word.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.e2e.test_cli import ROOT, cli

SHIPPED = ROOT / "packs" / "soc_agent_packs" / "identity" / "playbooks"


def _responder_dir(tmp_path: Path, *, name: str, priority: int) -> Path:
    """The shipped brute-force playbook, renamed and out of its pack (so with the pack's
    setting written in), with its SSH case under the new name."""
    text = (SHIPPED / "brute-force.yaml").read_text(encoding="utf-8")
    book = yaml.safe_load(text.replace("settings.brute_force_burst", "20"))
    book.update(name=name, priority=priority)
    folder = tmp_path / "mine"
    (folder / "tests" / name).mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(book, sort_keys=False), encoding="utf-8")
    case = yaml.safe_load(
        (SHIPPED / "tests" / "brute-force" / "ssh-brute-force-then-success.yaml").read_text()
    )
    case["expect"]["playbook"] = name
    (folder / "tests" / name / "ssh-brute-force-then-success.yaml").write_text(
        yaml.safe_dump(case, sort_keys=False), encoding="utf-8"
    )
    return folder


def test_a_case_fails_when_production_would_select_a_shipped_playbook(tmp_path: Path) -> None:
    folder = _responder_dir(tmp_path, name="ssh-brute-force", priority=100)
    result = cli("playbooks", "test", str(folder), cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL ssh-brute-force/ssh-brute-force-then-success" in result.stdout
    assert "playbook brute-force was selected, expected ssh-brute-force" in result.stdout

    above = _responder_dir(tmp_path / "above", name="ssh-brute-force", priority=245)
    passed = cli("playbooks", "test", str(above), cwd=tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    # A passing case prints the decision it checked.
    assert (
        "PASS ssh-brute-force/ssh-brute-force-then-success: ssh-brute-force score 100: "
        "block_ip ip:203.0.113.45 executed (threshold.execute)"
    ) in passed.stdout


def test_a_playbook_reusing_a_shipped_name_is_an_error_naming_both_files(tmp_path: Path) -> None:
    folder = _responder_dir(tmp_path, name="brute-force", priority=245)
    config = tmp_path / "c.yaml"
    config.write_text(f"playbooks: [{folder}]\n", encoding="utf-8")
    result = cli(
        "run",
        "--alerts",
        str(ROOT / "samples" / "alerts" / "splunk_notable.json"),
        "--store",
        "s.db",
        cwd=tmp_path,
        env={"SOC_AGENT_CONFIG": str(config)},
    )
    assert result.returncode == 1
    assert f"{folder / 'brute-force.yaml'}" in result.stderr
    assert "playbook name 'brute-force' is already used by" in result.stderr
    assert str(SHIPPED / "brute-force.yaml") in result.stderr
    tested = cli("playbooks", "test", str(folder), cwd=tmp_path)
    assert tested.returncode == 1 and "is already used by" in tested.stderr


def test_a_recording_the_capability_could_not_return_fails_the_case(tmp_path: Path) -> None:
    folder = _responder_dir(tmp_path, name="ssh-brute-force", priority=245)
    case_file = folder / "tests" / "ssh-brute-force" / "ssh-brute-force-then-success.yaml"
    case = yaml.safe_load(case_file.read_text(encoding="utf-8"))
    case["steps"]["src_intel"][0]["result"]["score"] = "very bad"
    case_file.write_text(yaml.safe_dump(case, sort_keys=False), encoding="utf-8")
    result = cli("playbooks", "test", str(folder), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "recording for 'src_intel[0]' is not what threat_intel.lookup returns: score:"
    ) in result.stdout
