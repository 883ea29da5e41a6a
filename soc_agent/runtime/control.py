"""What is installed: connectors, their capabilities and grants (for the CLI, API and checks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soc_agent_connectors import Connector, load_connector_classes

from soc_agent.settings import Settings

__all__ = ["connector_catalog", "describe_connectors"]


def describe_connectors(
    settings: Settings, live: Mapping[str, Connector] | None = None
) -> list[dict[str, Any]]:
    """Installed connectors, their capabilities and grants; with `live` (a running
    runtime's connectors) also their state, e.g. an HTTP connector's circuit breaker."""
    out: list[dict[str, Any]] = []
    installed = load_connector_classes()
    aliases = {  # connectors configured under another name (`use:`)
        name: installed[str(raw["use"])]
        for name, raw in settings.connectors.items()
        if "use" in raw and str(raw["use"]) in installed
    }
    classes = {**installed, **aliases, **{n: type(c) for n, c in (live or {}).items()}}
    for name, cls in sorted(classes.items()):
        granted = set(settings.grants.get(name, []))
        status = live[name].status() if live and name in live else {}
        base_url = status.get("base_url") or settings.connectors.get(name, {}).get("base_url")
        out.append(
            {
                "name": name,
                "description": cls.description,
                "configured": name in settings.connectors,
                "base_url": base_url,
                "breaker": status.get("breaker"),
                "capabilities": [
                    {
                        **cap.describe(),
                        "granted": name in settings.connectors and set(cap.scopes) <= granted,
                    }
                    for cap in sorted(cls.capabilities().values(), key=lambda c: c.name)
                ],
            }
        )
    return out


def connector_catalog() -> dict[str, dict[str, dict[str, Any]]]:
    """connector -> capability -> {kind, target}: lets playbook validation check names."""
    return {
        name: {
            cap.name: {"kind": cap.kind.value, "target": cap.target.value if cap.target else None}
            for cap in cls.capabilities().values()
        }
        for name, cls in load_connector_classes().items()
    }
