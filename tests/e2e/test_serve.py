"""`soc-agent tokens` and `soc-agent serve` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.served import Served, cli, start_served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_served(tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


def test_tokens_are_shown_once_stored_hashed_and_revocable(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "t.db")]
    made = cli("tokens", "create", "--name", "carol", "--role", "senior", *store, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("soc_") and len(secret) > 40 and "\n" not in secret
    assert "shown only this once" in made.stderr
    db = sqlite3.connect(tmp_path / "t.db")
    (stored,) = db.execute("SELECT token_hash FROM api_tokens WHERE name='carol'").fetchone()
    db.close()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.encode() not in (tmp_path / "t.db").read_bytes()

    listed = cli("tokens", "list", "--json", *store, cwd=tmp_path)
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["name"], row["role"], row["active"]) == ("carol", "senior", True)
    assert secret not in listed.stdout

    dup = cli("tokens", "create", "--name", "carol", "--role", "viewer", *store, cwd=tmp_path)
    assert dup.returncode == 1 and "revoke it first" in dup.stderr
    bad = cli("tokens", "create", "--name", "dave", "--role", "root", *store, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown role" in bad.stderr

    assert cli("tokens", "revoke", "carol", *store, cwd=tmp_path).returncode == 0
    again = cli("tokens", "revoke", "carol", *store, cwd=tmp_path)
    assert again.returncode == 1 and "no active token" in again.stderr
    audit = cli("audit", "list", "--json", *store, cwd=tmp_path)
    events = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["action"], e["actor"], e["subject"]) for e in events] == [
        ("audit.keyed", "soc-agent", "audit"),
        ("api.token_create", "local:ops-test", "carol"),
        ("api.token_revoke", "local:ops-test", "carol"),
    ]
    assert secret not in audit.stdout


def test_serve_publishes_openapi_and_enforces_tokens(served: Served) -> None:
    spec = served.api("GET", "/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/proposals/{proposal_id}/approve" in spec.json()["paths"]
    assert served.api("GET", "/api/v1/proposals").status_code == 401
    listed = served.api("GET", "/api/v1/proposals", "vic")
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 2
    pid = served.proposal_id("quarantine_file")
    assert served.api("POST", f"/api/v1/proposals/{pid}/approve", "vic").status_code == 403


def test_serve_approves_executes_once_and_sees_cli_revocation(served: Served) -> None:
    pid = served.proposal_id("isolate_host")
    first = served.api("POST", f"/api/v1/proposals/{pid}/approve", "sam", json={"comment": "a"})
    assert first.status_code == 200 and first.json()["proposal"]["status"] == "pending"
    second = served.api("POST", f"/api/v1/proposals/{pid}/approve", "sue")
    assert second.json()["proposal"]["status"] == "executed"
    assert served.journal().count(("isolate_host", "ws-eng-007")) == 1
    late = served.api("POST", f"/api/v1/proposals/{pid}/approve", "ada")
    assert late.status_code == 409

    revoked = cli("tokens", "revoke", "ada", *served.store_args, cwd=served.root)
    assert revoked.returncode == 0
    assert served.api("GET", "/api/v1/me", "ada").status_code == 401
    verify = cli("audit", "verify", *served.store_args, cwd=served.root)
    assert verify.returncode == 0, verify.stderr
