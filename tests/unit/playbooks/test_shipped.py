"""The shipped playbooks: they load against the real connector catalog, their cases
pass through the real normalizer and engine, and the committed JSON Schema is current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import load_connector_classes

from soc_agent.ingest import normalize
from soc_agent.models import Alert
from soc_agent.playbooks import Playbook, json_schema_text, load_playbooks
from soc_agent.playbooks.loader import playbook_files
from soc_agent.playbooks.testing import Case, load_cases, run_case
from soc_agent.runtime.playbook_set import load_all_playbooks, playbook_sources
from soc_agent.settings import Settings
from soc_agent.settings.agent import with_packs

# The default deployment: the shipped playbooks and the shipped packs' (identity).
SETTINGS = with_packs(Settings())
FOLDERS = playbook_sources(SETTINGS)
CASES = [case for folder in FOLDERS for case in load_cases(folder / "tests")]


def _shipped() -> list[Playbook]:
    return load_all_playbooks(SETTINGS)


def _normalize(doc: Any, hint: str | None) -> Alert:
    return normalize(doc, format_hint=hint)


def _catalog() -> dict[str, Any]:
    return {name: cls.capabilities() for name, cls in load_connector_classes().items()}


def test_every_shipped_playbook_loads_against_the_connector_catalog() -> None:
    books = load_playbooks(playbook_files(FOLDERS), catalog=_catalog())
    names = {b.name for b in books}
    assert {
        "malware-on-endpoint",
        "suspicious-sign-in",
        "brute-force",
        "c2-traffic",
        "phishing-report",
        "cloud-credential-misuse",
        "triage-default",
    } <= names
    default = next(b for b in books if b.name == "triage-default")
    assert default.match.strip() == "true"
    assert default.priority == min(b.priority for b in books)
    assert all(r.execute_at is None and r.propose_at is None for r in default.respond)


def test_every_playbook_has_a_containing_and_a_benign_case() -> None:
    by_book: dict[str, list[Case]] = {}
    for case in CASES:
        by_book.setdefault(case.expected_playbook or "", []).append(case)
    for book in _shipped():
        assert len(by_book.get(book.name, [])) >= 2, book.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_shipped_case_passes(case: Case) -> None:
    books = _shipped()
    result = await run_case(case, books, normalize=_normalize, decide=None)
    assert result.ok, "\n".join(result.failures)


async def test_a_wrong_expectation_is_reported(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "malware-on-endpoint/known-malware-contained")
    wrong = case.model_copy(deep=True)
    wrong.expect.score_max = 10
    wrong.expect.no_actions = [type(wrong.expect.actions[0])(action="isolate_host")]
    del wrong.steps["host_asset"]
    result = await run_case(wrong, _shipped(), normalize=_normalize)
    assert not result.ok
    text = "\n".join(result.failures)
    assert "expected at most 10" in text
    assert "did not expect isolate_host but got it on host:ws-fin-042" in text
    assert "step 'host_asset' ran but the case has no recording for it" in text


def test_committed_json_schema_is_up_to_date() -> None:
    committed = (FOLDERS[0] / "playbook.schema.json").read_text(encoding="utf-8")
    assert committed == json_schema_text(), (
        "playbooks/playbook.schema.json is stale; regenerate it with "
        "`soc-agent playbooks schema > playbooks/playbook.schema.json`"
    )
