"""Wazuh alerts, read natively and through the shipped mapping, decided by the shipped
playbooks, as a user runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_cli import ROOT, cli, decisions

FIXTURES = ROOT / "tests" / "fixtures" / "wazuh"


def _decide(tmp_path: Path, name: str) -> dict[str, Any]:
    """One Wazuh alert, detected as the built-in format, on a store of its own (alerts on
    one host would correlate)."""
    result = cli(
        "run", "--json", "--store", f"{name}.db", "--alerts", str(FIXTURES / name), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (decision,) = decisions(result.stdout)
    return decision


def test_wazuh_alerts_reach_the_right_playbooks(tmp_path: Path) -> None:
    brute = _decide(tmp_path, "sshd-brute-force.json")
    assert brute["playbook"] == "brute-force"
    assert brute["alert_ids"] == ["wazuh:wazuh-manager:1763629200.1180421"]
    # A level-3 "authentication success" is routine: the catch-all notifies, nobody's
    # sessions are revoked (suspicious-sign-in used to take it for a risky sign-in).
    login = _decide(tmp_path, "sshd-login-success.json")
    assert login["playbook"] == "triage-default"
    assert {a["action"] for a in login["actions"]} <= {"notify"}


def test_records_a_keep_condition_leaves_out_are_counted_not_dead_lettered(
    tmp_path: Path,
) -> None:
    mapping = (ROOT / "samples" / "mappings" / "wazuh.yaml").read_text()
    strict = tmp_path / "wazuh.yaml"
    strict.write_text(
        mapping.replace("\nfields:\n", "\nkeep:\n  - {field: rule.level, at_least: 5}\n\nfields:\n")
    )
    config = tmp_path / "c.yaml"
    config.write_text(f"mappings: [{strict}]\n")
    login = str(FIXTURES / "sshd-login-success.json")
    # The built-in format is detected first; the mapping (and its keep:) is chosen by name.
    run = cli(
        "run", "--store", "s.db", "--alerts", login, "--format", "wazuh_custom",
        cwd=tmp_path, env={"SOC_AGENT_CONFIG": str(config)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "0 alert(s), 0 dead letter(s); 1 filtered" in run.stdout

    shown = cli(
        "normalize", login, "--mapping", str(strict), "--format", "wazuh_custom", cwd=tmp_path
    )
    assert shown.returncode == 0 and shown.stdout == ""
    assert "filtered: " in shown.stderr
    assert "wazuh_custom: rule.level is '3', below 5" in shown.stderr


def test_an_unknown_format_is_refused_before_anything_runs(tmp_path: Path) -> None:
    login = str(FIXTURES / "sshd-login-success.json")
    run = cli("run", "--store", "s.db", "--alerts", login, "--format", "wazuhh", cwd=tmp_path)
    assert run.returncode == 2
    assert "unknown --format 'wazuhh' (known: elastic," in run.stderr
    assert not (tmp_path / "s.db").exists()
