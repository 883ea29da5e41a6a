"""What is installed: connectors, their capabilities and grants (for the CLI, API and checks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soc_agent_connectors import Connector

from soc_agent.runtime.declarative import available_connector_classes
from soc_agent.settings import Settings

__all__ = ["active_connectors", "connector_catalog", "describe_connectors"]


def describe_connectors(
    settings: Settings, live: Mapping[str, Connector] | None = None
) -> list[dict[str, Any]]:
    """Installed connectors, their capabilities and grants; with `live` (a running
    runtime's connectors) also their state, e.g. an HTTP connector's circuit breaker."""
    out: list[dict[str, Any]] = []
    for name, cls in sorted(_classes(settings, live).items()):
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


def connector_catalog(
    settings: Settings | None = None, live: Mapping[str, Connector] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """connector -> capability -> {kind, target, input_model, output_model}: lets playbook
    validation check names and arguments.

    The installed connectors under their own names, plus, given `settings`, those
    configured under another (`use:`) and, given `live`, a runtime's own instances.
    """
    classes = _classes(settings, live)
    return {
        name: {
            cap.name: {
                "kind": cap.kind.value,
                "target": cap.target.value if cap.target else None,
                "input_model": cap.input_model,
                "output_model": cap.output_model,
            }
            for cap in cls.capabilities().values()
        }
        for name, cls in classes.items()
    }


def _classes(
    settings: Settings | None, live: Mapping[str, Connector] | None
) -> dict[str, type[Connector]]:
    """Installed classes by name, those configured under another name (`use:`), and a
    running runtime's own instances."""
    installed = available_connector_classes(settings)
    aliases = {
        name: installed[str(raw["use"])]
        for name, raw in (settings.connectors.items() if settings else ())
        if "use" in raw and str(raw["use"]) in installed
    }
    return {**installed, **aliases, **{n: type(c) for n, c in (live or {}).items()}}


def active_connectors(settings: Settings) -> list[str]:
    """One line per connector: what runs with which grants, and which defaults are off.

    Printed at start-up, so a configuration that quietly does less is seen at once.
    """
    lines = []
    for name, raw in settings.connectors.items():
        use = f" (use: {raw['use']})" if "use" in raw and raw["use"] != name else ""
        scopes = ", ".join(settings.grants.get(name, [])) or "nothing"
        lines.append(f"connector {name}{use}: grants {scopes}")
    lines += [
        f"connector {name}: off (connectors.{name}.enabled: false)"
        for name in settings.disabled_connectors()
    ]
    return lines
