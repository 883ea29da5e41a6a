"""`soc-agent packs list|show|validate|test`: what a pack carries, and whether it holds up.

Validation and tests run with the pack enabled on top of the deployment's own
settings, so they see exactly what production would: the shipped and configured
playbooks beside the pack's, its connector definitions in the catalog, and the
start-up checks (arguments, configured connectors, duplicate names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soc_agent_connectors import load_connector_classes

from soc_agent.ingest import load_mappings
from soc_agent.playbooks.loader import playbook_files
from soc_agent.playbooks.testing import CaseResult, load_cases
from soc_agent.risk import load_risk_rules
from soc_agent.runtime.declarative import load_definitions
from soc_agent.runtime.playbook_set import load_all_playbooks
from soc_agent.runtime.playbook_tests import run_playbook_tests
from soc_agent.settings import Settings
from soc_agent.settings.agent import enabled_packs, with_packs
from soc_agent.settings.packs import Pack, installed_packs, load_pack, resolve

__all__ = ["describe_pack", "find_pack", "list_packs", "test_pack", "validate_pack"]


def find_pack(entry: str, settings: Settings) -> Pack:
    """An installed pack's name or a pack directory."""
    return resolve(entry, settings.config.parent if settings.config else None)


def list_packs(settings: Settings) -> list[dict[str, Any]]:
    """Installed and configured packs, each marked enabled or not."""
    enabled = {pack.name: pack for pack in enabled_packs(settings)}
    rows: dict[str, dict[str, Any]] = {}
    for name, root in sorted(installed_packs().items()):
        pack = load_pack(root)
        rows[name] = _row(pack, enabled=name in enabled, installed=True)
    for pack in enabled.values():
        rows.setdefault(pack.name, _row(pack, enabled=True, installed=False))
    return list(rows.values())


def describe_pack(pack: Pack) -> dict[str, Any]:
    """What the pack carries, read from its files."""
    playbooks = pack.folder("playbooks")
    mappings = pack.folder("mappings")
    connectors = pack.folder("connectors")
    risk_rules = pack.folder("risk_rules")
    tests = playbooks / "tests" if playbooks is not None else None
    return {
        **_row(pack, enabled=None, installed=None),
        "requires": pack.manifest.requires.model_dump(),
        "settings": {n: s.model_dump() for n, s in pack.manifest.settings.items()},
        "playbooks": [p.stem for p in playbook_files([playbooks])] if playbooks else [],
        "test_cases": len(load_cases(tests)) if tests is not None and tests.is_dir() else 0,
        "mappings": [m.name for m in load_mappings([mappings])] if mappings else [],
        "connectors": [d.name for d in load_definitions([connectors])] if connectors else [],
        "python_connectors": list(pack.manifest.provides.connectors),
        "risk_rules": [r.id for r in load_risk_rules([risk_rules]).rules] if risk_rules else [],
    }


def validate_pack(pack: Pack, settings: Settings) -> dict[str, Any]:
    """Load everything the pack carries as start-up would; raises on the first problem."""
    enabled = _enabled(pack, settings)
    playbooks = load_all_playbooks(enabled)
    load_mappings(enabled.mappings)
    load_connector_classes(pack.manifest.provides.connectors)
    return {
        **describe_pack(pack),
        "playbooks_loaded": len(playbooks),
    }


async def test_pack(pack: Pack, settings: Settings) -> list[CaseResult]:
    """The pack's test cases, selecting among every playbook production would load."""
    folder = pack.folder("playbooks")
    if folder is None:
        return []
    return await run_playbook_tests(folder, _enabled(pack, settings))


def _enabled(pack: Pack, settings: Settings) -> Settings:
    """The deployment's settings with `pack` enabled too (its other packs stay enabled)."""
    if any(p.root.resolve() == pack.root.resolve() for p in enabled_packs(settings)):
        return settings
    return with_packs(settings.model_copy(update={"packs": [*settings.packs, str(pack.root)]}))


def _row(pack: Pack, *, enabled: bool | None, installed: bool | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": pack.name,
        "version": pack.manifest.version,
        "description": pack.manifest.description,
        "root": str(Path(pack.root)),
    }
    if enabled is not None:
        row["enabled"] = enabled
    if installed is not None:
        row["installed"] = installed
    return row
