"""The CLI end to end, as a user runs it: a real process, real files, the shipped samples."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "alerts"


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "soc_agent", *args],
        cwd=cwd,
        env=full_env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def decisions(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One `run --json` over the shipped demo alerts, shared by the read-only checks."""
    work = tmp_path_factory.mktemp("demo")
    result = cli("run", "--alerts", str(SAMPLES), "--json", "--store", "demo.db", cwd=work)
    return work, result


def test_run_json_contract(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, result = demo
    assert result.returncode == 0, result.stderr
    out = decisions(result.stdout)
    assert len(out) >= 7
    for d in out:
        assert {"incident_id", "alert_ids", "playbook", "score", "actions"} <= d.keys()
        for a in d["actions"]:
            assert {"action", "target", "disposition", "reason"} <= a.keys()
            assert a["disposition"] in {
                "executed",
                "proposed",
                "notified",
                "escalated",
                "skipped",
                "denied",
            }
            assert a["rule"]
    by_playbook = {d["playbook"]: d for d in out}
    assert {
        "malware-on-endpoint",
        "brute-force",
        "suspicious-sign-in",
        "c2-traffic",
        "phishing-report",
        "cloud-credential-misuse",
        "triage-default",
    } <= by_playbook.keys()
    # the CEO account is protected: nothing against it executes automatically
    signin = by_playbook["suspicious-sign-in"]
    assert all(a["disposition"] != "executed" for a in signin["actions"])
    assert any(a["rule"] == "guardrail.protected_asset" for a in signin["actions"])
    # a score in the propose band queues a proposal rather than executing
    cloud = by_playbook["cloud-credential-misuse"]
    assert any(
        a["disposition"] == "proposed" and a["rule"] == "threshold.propose"
        for a in cloud["actions"]
    )


def test_run_reports_dead_letters_without_losing_them(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    work, result = demo
    letters = [
        json.loads(line)["dead_letter"]
        for line in result.stderr.splitlines()
        if line.startswith("{")
    ]
    assert len(letters) == 3
    assert all("malformed.jsonl" in d["source"] and d["reason"] for d in letters)
    db = sqlite3.connect(work / "demo.db")
    stored = db.execute("SELECT reason, original FROM dead_letters").fetchall()
    assert len(stored) == 3
    original = (SAMPLES / "malformed.jsonl").read_bytes()
    assert all(bytes(row[1]) in original for row in stored)


def test_run_leaves_proposals_and_a_valid_audit_chain(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    work, _ = demo
    listed = cli("proposals", "list", "--json", "--store", "demo.db", cwd=work)
    assert listed.returncode == 0, listed.stderr
    proposals = [json.loads(line) for line in listed.stdout.splitlines()]
    assert proposals and all(p["status"] == "pending" for p in proposals)
    urgencies = [p["urgency"] for p in proposals]
    assert urgencies == sorted(urgencies, reverse=True)
    verify = cli("audit", "verify", "--json", "--store", "demo.db", cwd=work)
    assert verify.returncode == 0
    assert json.loads(verify.stdout)["ok"] is True


def test_rerun_is_idempotent(tmp_path: Path) -> None:
    first = cli("run", "--alerts", str(SAMPLES), "--json", "--store", "s.db", cwd=tmp_path)
    second = cli("run", "--alerts", str(SAMPLES), "--json", "--store", "s.db", cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    assert second.stdout == ""  # every alert is a redelivery: no new decision
    journal = [
        json.loads(line) for line in (tmp_path / "s.containment.jsonl").read_text().splitlines()
    ]
    keys = [e["idempotency_key"] for e in journal]
    assert len(keys) == len(set(keys))


def test_store_from_environment_and_default(tmp_path: Path) -> None:
    env_run = cli(
        "run",
        "--alerts",
        str(SAMPLES / "elastic_bruteforce.json"),
        cwd=tmp_path,
        env={"SOC_AGENT_STORE": str(tmp_path / "from-env.db")},
    )
    assert env_run.returncode == 0, env_run.stderr
    assert (tmp_path / "from-env.db").exists()
    default_run = cli("run", "--alerts", str(SAMPLES / "elastic_bruteforce.json"), cwd=tmp_path)
    assert default_run.returncode == 0
    assert (tmp_path / "soc-agent.db").exists()
    assert "brute-force" in default_run.stdout


def _proposals(tmp_path: Path) -> list[dict[str, Any]]:
    listed = cli("proposals", "list", "--json", "--store", "s.db", cwd=tmp_path)
    return [json.loads(line) for line in listed.stdout.splitlines()]


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    listed = cli("audit", "list", "--json", "--store", "s.db", cwd=tmp_path)
    return [json.loads(line) for line in listed.stdout.splitlines()]


def _token(tmp_path: Path, name: str, role: str) -> Path:
    made = cli("tokens", "create", "--name", name, "--role", role, "--store", "s.db", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    path = tmp_path / f"{name}.token"
    path.write_text(made.stdout)
    return path


def test_approve_and_reject_from_the_cli(tmp_path: Path) -> None:
    cli("run", "--store", "s.db", cwd=tmp_path)
    proposals = _proposals(tmp_path)
    single = next(p for p in proposals if p["request"]["required_approvals"] == 1)
    double = next(p for p in proposals if p["request"]["required_approvals"] == 2)
    alice, bob = _token(tmp_path, "alice", "senior"), _token(tmp_path, "bob", "senior")
    agent = _token(tmp_path, "soc-agent", "admin")
    viewer = _token(tmp_path, "val", "viewer")

    def approve(pid: str, *who: str, verb: str = "approve") -> subprocess.CompletedProcess[str]:
        return cli("proposals", verb, pid, *who, "--store", "s.db", cwd=tmp_path)

    # A name typed at the command line proves nothing: no token, no decision.
    typed = approve(single["id"], "--analyst", "alice")
    assert typed.returncode == 1 and "needs an API token" in typed.stderr
    own = approve(single["id"], "--token-file", str(agent))
    assert own.returncode == 1 and "agent's own identity" in own.stderr
    low = approve(single["id"], "--token-file", str(viewer))
    assert low.returncode == 1 and "val is viewer" in low.stderr
    liar = approve(single["id"], "--token-file", str(bob), "--analyst", "alice")
    assert liar.returncode == 1 and "does not belong" in liar.stderr
    ok = approve(single["id"], "--token-file", str(alice))
    assert ok.returncode == 0 and "executed" in ok.stdout
    again = approve(single["id"], "--token-file", str(bob))
    assert again.returncode == 1 and "not pending" in again.stderr
    first = approve(double["id"], "--token-file", str(alice))
    assert "needs 1 more" in first.stdout
    same = cli(
        "proposals", "approve", double["id"], "--store", "s.db", cwd=tmp_path,
        env={"SOC_AGENT_TOKEN": alice.read_text().strip(), "SOC_AGENT_ANALYST": "ALICE"},
    )  # fmt: skip
    assert same.returncode == 1 and "different approver" in same.stderr
    rejected = approve(
        double["id"], "--token-file", str(bob), "--comment", "host is a honeypot", verb="reject"
    )
    assert rejected.returncode == 0 and "rejected" in rejected.stdout
    audit = _audit(tmp_path)
    actors = {(e["action"], e["actor"]) for e in audit}
    assert ("proposal.approve", "token:alice") in actors
    assert ("proposal.reject", "token:bob") in actors
    assert alice.read_text().strip() not in json.dumps(audit)


def test_the_local_operator_counts_once_for_four_eyes(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("local_operator: true\n")
    cli("run", "--store", "s.db", cwd=tmp_path)
    proposals = _proposals(tmp_path)
    double = next(p for p in proposals if p["request"]["required_approvals"] == 2)

    def approve(name: str) -> subprocess.CompletedProcess[str]:
        return cli(
            "proposals", "approve", double["id"], "--analyst", name,
            "--config", "cfg.yaml", "--store", "s.db", cwd=tmp_path,
        )  # fmt: skip

    first = approve("alice")
    assert first.returncode == 0 and "needs 1 more" in first.stdout
    # one shell, two typed names: still one person
    second = approve("bob")
    assert second.returncode == 1 and "different approver" in second.stderr
    # a real second person, with a token, completes it
    token = _token(tmp_path, "carol", "senior")
    done = cli(
        "proposals", "approve", double["id"], "--token-file", str(token),
        "--config", "cfg.yaml", "--store", "s.db", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0 and "executed" in done.stdout
    audit = _audit(tmp_path)
    approvals = [e for e in audit if e["action"] == "proposal.approve"]
    assert {e["actor"] for e in approvals} == {"local:operator", "token:carol"}
    assert any("typed as alice" in e["reason"] for e in approvals)


def test_kill_switch_turns_executions_into_proposals(tmp_path: Path) -> None:
    on = cli("kill-switch", "on", "--analyst", "lead", "--store", "s.db", cwd=tmp_path)
    assert on.returncode == 0 and "ON" in on.stdout
    run = cli("run", "--json", "--store", "s.db", cwd=tmp_path)
    acts = [a for d in decisions(run.stdout) for a in d["actions"]]
    assert acts and not any(a["disposition"] == "executed" for a in acts)
    assert any(a["rule"] == "guardrail.kill_switch" for a in acts)
    assert not (tmp_path / "s.containment.jsonl").exists()


def test_dry_run_executes_nothing(tmp_path: Path) -> None:
    run = cli("run", "--json", "--mode", "dry_run", "--store", "s.db", cwd=tmp_path)
    acts = [a for d in decisions(run.stdout) for a in d["actions"]]
    assert acts and {a["disposition"] for a in acts} == {"skipped"}
    assert any(a["intended"] == "executed" for a in acts)
    assert not (tmp_path / "s.containment.jsonl").exists()


def test_audit_verify_detects_tampering(tmp_path: Path) -> None:
    cli("run", "--store", "s.db", cwd=tmp_path)
    assert cli("audit", "verify", "--store", "s.db", cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "s.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    db.execute("UPDATE audit_log SET outcome='approved' WHERE seq=5")
    db.commit()
    db.close()
    broken = cli("audit", "verify", "--store", "s.db", cwd=tmp_path)
    assert broken.returncode == 1
    assert "entry 5" in broken.stderr


def test_normalize_contract(tmp_path: Path) -> None:
    one = cli("normalize", str(SAMPLES / "crowdstrike_malware.json"), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    alerts = [json.loads(line) for line in one.stdout.splitlines()]
    assert len(alerts) == 1 and alerts[0]["format"] == "crowdstrike"
    lines = cli("normalize", str(SAMPLES / "suricata_c2.jsonl"), cwd=tmp_path)
    assert lines.returncode == 0 and len(lines.stdout.splitlines()) >= 3
    doc = json.loads((SAMPLES / "elastic_bruteforce.json").read_text())
    array = json.dumps([doc, doc]).encode()
    piped = cli("normalize", "-", cwd=tmp_path, stdin=array)
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 2
    bad = cli(
        "normalize", str(SAMPLES / "malformed.jsonl"), "--dead-letters", "dl.jsonl", cwd=tmp_path
    )
    assert bad.returncode == 1
    assert bad.stderr.count("dead letter:") == 3
    written = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert len(written) == 3 and all(d["reason"] for d in written)


def test_playbooks_validate_and_test(tmp_path: Path) -> None:
    ok = cli("playbooks", "validate", cwd=tmp_path)
    assert ok.returncode == 0 and "9 playbook(s) valid" in ok.stdout
    tested = cli("playbooks", "test", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout
    assert tested.stdout.strip().endswith("0 failed")
    broken = tmp_path / "pb"
    broken.mkdir()
    (broken / "bad.yaml").write_text(
        "name: bad\nversion: '1'\ndescription: x\nmatch: 'true'\n"
        "steps:\n  - id: a\n    connector: threat_intel\n    capability: lookup\n"
        "    args: {indicator: x, type: ip}\n    when: 'alert.severity =='\n"
        "respond: []\n"
    )
    invalid = cli("playbooks", "validate", str(broken), cwd=tmp_path)
    assert invalid.returncode == 1
    assert "bad.yaml:10" in invalid.stderr and "when" in invalid.stderr


def test_bad_config_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("store: x.db\npolicy:\n  agent_autonomy: 9\n")
    bad = cli("run", "--config", "cfg.yaml", cwd=tmp_path)
    assert bad.returncode == 1
    assert "cfg.yaml:3" in bad.stderr and "policy.agent_autonomy" in bad.stderr
    env_bad = cli("run", cwd=tmp_path, env={"SOC_AGENT_POLICY__MODE": "yolo"})
    assert env_bad.returncode == 1 and "SOC_AGENT_POLICY__MODE" in env_bad.stderr


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = cli("run", "--alerts", "nope.json", cwd=tmp_path)
    assert missing.returncode == 1 and "not found: nope.json" in missing.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["normalize"],
        ["playbooks"],
        ["playbooks", "validate"],
        ["playbooks", "test"],
        ["proposals", "list"],
        ["proposals", "approve"],
        ["audit", "verify"],
        ["kill-switch"],
        ["connectors", "list"],
        ["actions", "rollback"],
    ],
)
def test_help_everywhere(command: list[str], tmp_path: Path) -> None:
    result = cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_run_reads_stdin(tmp_path: Path) -> None:
    data = (SAMPLES / "elastic_bruteforce.json").read_bytes()
    result = cli("run", "--alerts", "-", "--json", "--store", "s.db", cwd=tmp_path, stdin=data)
    assert result.returncode == 0, result.stderr
    (decision,) = decisions(result.stdout)
    assert decision["playbook"] == "brute-force"


def test_replay_is_shadow_and_leaves_no_state(tmp_path: Path) -> None:
    result = cli("replay", "--alerts", str(SAMPLES), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    acts = [a for d in decisions(result.stdout) for a in d["actions"]]
    assert acts and {a["disposition"] for a in acts} == {"skipped"}
    assert {a["rule"] for a in acts} == {"guardrail.shadow"}
    assert {a["intended"] for a in acts} >= {"executed", "proposed"}
    assert list(tmp_path.iterdir()) == []  # no store, journal or outbox left behind


def test_config_errors_never_echo_secret_values(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("audit_key: 987654321\n")
    bad = cli("run", "--config", "cfg.yaml", cwd=tmp_path)
    assert bad.returncode == 1 and "audit_key" in bad.stderr
    assert "987654321" not in bad.stderr


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mRED\u202eexe.txt\u2066\x9b31m"


def test_control_and_bidi_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    """An attacker who controls an alert field must not drive the operator's terminal."""
    doc = json.loads((SAMPLES / "crowdstrike_malware.json").read_text())
    doc["event"]["Name"] = f"Known Malware {HOSTILE}"
    doc["event"]["FileName"] = f"invoice{HOSTILE}.exe"
    alert = tmp_path / "hostile.json"
    alert.write_text(json.dumps(doc))
    (tmp_path / "bad.jsonl").write_text(f'{{"oops": "{HOSTILE.encode().hex()}"\n')
    outputs = [
        cli("run", "-a", str(alert), "-a", "bad.jsonl", "--store", "s.db", cwd=tmp_path),
        cli("run", "-a", str(alert), "--json", "--store", "fresh.db", cwd=tmp_path),
        cli("proposals", "list", "--store", "s.db", cwd=tmp_path),
        cli("proposals", "list", "--json", "--store", "s.db", cwd=tmp_path),
        cli("actions", "list", "--store", "s.db", cwd=tmp_path),
        cli("audit", "list", "--store", "s.db", cwd=tmp_path),
        cli("kill-switch", "status", "--analyst", f"eve{HOSTILE}", "--store", "s.db", cwd=tmp_path),
        cli("kill-switch", "on", "--analyst", f"eve{HOSTILE}", "--store", "s.db", cwd=tmp_path),
        cli("audit", "list", "--json", "--store", "s.db", cwd=tmp_path),
    ]
    assert "Known Malware" in outputs[0].stdout
    for done in outputs:
        for stream in (done.stdout, done.stderr):
            bad = sorted({hex(ord(c)) for c in stream if c in HOSTILE and not c.isprintable()})
            assert bad == [], (done.args, bad)
    assert "\\u001b" in outputs[0].stdout  # shown, escaped, so the analyst sees the attempt
    json_lines = [line for line in outputs[1].stdout.splitlines() if line.startswith("{")]
    assert json_lines and all(json.loads(line) for line in json_lines)


def test_the_store_its_wal_and_the_journals_are_private_to_their_owner(tmp_path: Path) -> None:
    import stat

    done = cli("run", "--store", "s.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    made = [p for p in tmp_path.iterdir() if p.is_file() and not p.name.endswith(".lock")]
    assert any(p.name == "s.db" for p in made)
    assert any(p.name.endswith(".jsonl") for p in made), [p.name for p in made]
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in made if p.stat().st_mode & 0o077}
    assert loose == {}


def test_an_oversized_alert_is_dead_lettered_by_its_head_length_and_hash(tmp_path: Path) -> None:
    doc = json.loads((SAMPLES / "crowdstrike_malware.json").read_text())
    big = dict(doc, padding="x" * (6 * 1024 * 1024))  # over the 5 MiB an alert may have
    lines = [json.dumps(big), (SAMPLES / "suricata_c2.jsonl").read_text().splitlines()[0]]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    run = cli("run", "--alerts", "mixed.jsonl", "--json", "--store", "s.db", cwd=tmp_path)
    assert len(decisions(run.stdout)) == 1, run.stderr  # the normal alert is decided
    assert "runtime.max_alert_bytes" in run.stderr
    db = sqlite3.connect(tmp_path / "s.db")
    (source, reason, original) = db.execute(
        "SELECT source, reason, original FROM dead_letters"
    ).fetchone()
    db.close()
    # Too large to keep whole: where it is, its first 64 KiB, its length and its hash.
    assert source == "mixed.jsonl:line 1"
    assert original == lines[0].encode()[: 64 * 1024]
    assert f"{len(lines[0]):,} bytes" in reason
    assert hashlib.sha256(lines[0].encode()).hexdigest() in reason


def test_a_document_too_large_to_parse_at_once_is_refused_and_json_lines_are_not(
    tmp_path: Path,
) -> None:
    docs = [json.loads(line) for line in (SAMPLES / "suricata_c2.jsonl").read_text().splitlines()]
    (tmp_path / "array.json").write_text(json.dumps(docs, indent=2))
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    small = {
        "SOC_AGENT_RUNTIME__MAX_INPUT_BYTES": "2048",
        "SOC_AGENT_RUNTIME__MAX_ALERT_BYTES": "2048",
    }
    refused = cli(
        "run", "--alerts", "array.json", "--store", "t.db", cwd=tmp_path, env=small
    )  # fmt: skip
    said = refused.stdout + refused.stderr
    assert "runtime.max_input_bytes" in said and "split it" in said and "array.json" in said
    assert "0 alert(s), 1 dead letter(s)" in said
    # The same records as JSON lines are read one at a time: no bound on the whole.
    read = cli(
        "run", "--alerts", "lines.jsonl", "--json", "--store", "u.db", cwd=tmp_path, env=small
    )
    assert len(decisions(read.stdout)) > 1, read.stderr
    assert "dead_letter" not in read.stderr


def test_an_input_without_alerts_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "none.json"
    empty.write_text("[]\n")
    ran = cli("run", "--alerts", str(empty), "--store", "s.db", cwd=tmp_path)
    assert ran.returncode == 0
    assert f"no alerts in {empty}" in ran.stderr
    assert "0 alert(s), 0 dead letter(s)\n" in ran.stdout  # no dangling "; "
    as_json = cli("run", "--alerts", str(empty), "--json", "--store", "s.db", cwd=tmp_path)
    assert as_json.stdout == "" and f"no alerts in {empty}" in as_json.stderr
    normalized = cli("normalize", str(empty), cwd=tmp_path)
    assert normalized.returncode == 0 and normalized.stdout == ""
    assert f"no alerts in {empty}" in normalized.stderr


def test_close_an_incident_with_a_verdict_from_the_cli(tmp_path: Path) -> None:
    cli("run", "--store", "s.db", cwd=tmp_path)
    incident_id = _proposals(tmp_path)[0]["incident_id"]
    alice, viewer = _token(tmp_path, "alice", "analyst"), _token(tmp_path, "val", "viewer")

    def close(*args: str) -> subprocess.CompletedProcess[str]:
        return cli("incidents", "close", incident_id, *args, "--store", "s.db", cwd=tmp_path)

    nobody = close("--verdict", "false_positive", "--reason", "scanner")
    assert nobody.returncode == 1 and "needs an API token" in nobody.stderr
    low = close("--verdict", "false_positive", "--reason", "scanner", "--token-file", str(viewer))
    assert low.returncode == 1 and "needs the analyst role" in low.stderr
    odd = close("--verdict", "maybe", "--reason", "unsure", "--token-file", str(alice))
    assert odd.returncode == 2 and "--verdict must be one of true_positive" in odd.stderr
    ok = close(
        "--verdict", "true_positive", "--reason", "confirmed beacon", "--token-file", str(alice)
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{incident_id} closed as true_positive by token:alice"
    closing = [e for e in _audit(tmp_path) if e["action"] == "incident.close"]
    assert [(e["actor"], e["subject"], e["outcome"]) for e in closing] == [
        ("token:alice", incident_id, "true_positive")
    ]
