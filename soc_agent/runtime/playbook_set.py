"""The playbooks production loads: shipped and configured, checked against the connectors.

One load over every file, so a configured playbook that reuses a shipped
playbook's name is an error naming both files, never a second playbook beside
the first. Each step's connector and each respond rule's action must be
provided by a configured connector; `missing_connectors: escalate` starts anyway,
and what those playbooks cannot do is escalated (their steps fail, so the rules
reading them are unevaluated; their actions are escalated `config.no_connector`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from soc_agent_connectors import Connector

from soc_agent.errors import ConfigError
from soc_agent.playbooks import Playbook, load_playbooks, shipped_playbooks_dir
from soc_agent.playbooks.loader import parse_yaml, playbook_files, unconfigured_references
from soc_agent.runtime.control import connector_catalog
from soc_agent.settings import Settings
from soc_agent.settings.agent import enabled_packs

__all__ = ["load_all_playbooks", "playbook_sources"]

logger = logging.getLogger(__name__)


def playbook_sources(settings: Settings) -> list[Path]:
    """Where production reads playbooks from: the shipped ones (unless turned off), then
    `playbooks:`."""
    shipped = [shipped_playbooks_dir()] if settings.shipped_playbooks else []
    return [*shipped, *settings.playbooks]


def load_all_playbooks(
    settings: Settings,
    *,
    live: Mapping[str, Connector] | None = None,
    extra: Sequence[Path] = (),
) -> list[Playbook]:
    """Every playbook production runs (plus `extra` sources, for `playbooks test`)."""
    sources = playbook_sources(settings)
    sources += [p for p in extra if p.resolve() not in {s.resolve() for s in sources}]
    files = playbook_files(sources)
    catalog = connector_catalog(settings, live)
    playbooks = load_playbooks(files, catalog=catalog)
    gaps = [
        *map(str, unconfigured_references(files, catalog, settings.connectors.keys())),
        *_pack_gaps(settings),
    ]
    if gaps and settings.missing_connectors == "fail":
        listed = "\n".join(gaps)
        raise ConfigError(
            f"playbooks and packs need connectors that are not configured:\n{listed}\n"
            "configure them under connectors:, or set missing_connectors: escalate to start "
            "anyway and escalate what they cannot do",
            key="missing_connectors",
        )
    for gap in gaps:
        logger.warning("%s (missing_connectors: escalate)", gap)
    return _with_pack_settings(playbooks, settings)


def _pack_gaps(settings: Settings) -> list[str]:
    """Each enabled pack whose `requires.connectors` are not all configured."""
    gaps = []
    for pack in enabled_packs(settings):
        missing = [c for c in pack.manifest.requires.connectors if c not in settings.connectors]
        if missing:
            gaps.append(
                f"pack {pack.name!r} needs connectors that are not configured: {', '.join(missing)}"
            )
    return gaps


def _with_pack_settings(playbooks: list[Playbook], settings: Settings) -> list[Playbook]:
    """Each pack's playbooks read its settings; the others read an empty `settings`."""
    by_name: dict[str, dict[str, Any]] = {}
    for folder, values in settings.playbook_settings.items():
        for path in playbook_files([Path(folder)]):
            data, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))
            by_name[str(data["name"])] = values
    return [p.with_settings(by_name[p.name]) if p.name in by_name else p for p in playbooks]
