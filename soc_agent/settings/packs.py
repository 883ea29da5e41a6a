"""Packs: playbooks with their tests, field mappings and YAML connectors in one bundle.

A pack is a directory holding `pack.yaml` and any of `playbooks/` (with
`playbooks/tests/<playbook>/*.yaml`), `mappings/` and `connectors/` (declarative
HTTP connector definitions). It is installed as a directory named in `packs:`, or
as a Python distribution registering the package that holds it under the
`soc_agent.packs` entry point, then named by its pack name; such a distribution
may also carry Python connectors, registered under `soc_agent.connectors` and listed
in the manifest's `provides.connectors`. Enabling a pack adds
its folders to `playbooks:`, `mappings:` and `connector_definitions:`, so
everything it carries goes through the same validation, tests and start-up checks
as one's own files, and its `requires.connectors` must be configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)

from soc_agent.errors import ConfigError
from soc_agent.yaml_input import read_model

__all__ = [
    "ENTRY_POINT_GROUP",
    "Pack",
    "PackManifest",
    "installed_packs",
    "load_pack",
    "shipped_packs",
]

ENTRY_POINT_GROUP = "soc_agent.packs"
MANIFEST = "pack.yaml"


class Requirements(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connectors: list[str] = Field(
        default_factory=list, description="connectors the deployment must configure"
    )


class Provides(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connectors: list[str] = Field(
        default_factory=list,
        description="Python connectors the pack's distribution registers under the "
        "soc_agent.connectors entry point",
    )


_SETTING_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "list": list[Any],
}


class SettingSpec(BaseModel):
    """One setting a pack's playbooks read as `settings.<name>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["string", "integer", "number", "boolean", "list"]
    default: Any = None
    required: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _default_fits(self) -> SettingSpec:
        if self.required and self.default is not None:
            raise ValueError("a required setting has no default")
        if not self.required and self.default is None:
            raise ValueError("an optional setting needs a default")
        return self


class PackManifest(BaseModel):
    """`pack.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?$")
    description: str = Field(min_length=1, max_length=500)
    requires: Requirements = Field(default_factory=Requirements)
    provides: Provides = Field(default_factory=Provides)
    settings: dict[str, SettingSpec] = Field(
        default_factory=dict, description="the pack's settings schema; values in pack_settings"
    )

    def settings_model(self) -> type[BaseModel]:
        """The settings schema as a model: unknown names are errors, types are checked."""
        fields: dict[str, Any] = {
            name: (
                _SETTING_TYPES[spec.type],
                Field(... if spec.required else spec.default, description=spec.description),
            )
            for name, spec in self.settings.items()
        }
        return create_model(
            f"{self.name}-settings", __config__=ConfigDict(extra="forbid"), **fields
        )


@dataclass(frozen=True)
class Pack:
    manifest: PackManifest
    root: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    def folder(self, name: str) -> Path | None:
        """One of the pack's folders (playbooks, mappings, connectors), if it holds YAML
        files (a distribution's `connectors/` may hold only its Python connectors)."""
        path = self.root / name
        holds_yaml = path.is_dir() and any(path.glob("*.y*ml"))
        return path if holds_yaml else None


def load_pack(root: Path) -> Pack:
    """The pack in `root`; a bad manifest names the file, line and field."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise ConfigError(f"not a pack: no {MANIFEST} in {root}", source=str(root))
    parsed, _ = read_model(manifest, PackManifest, "pack manifest")
    return Pack(parsed, root)


def installed_packs() -> dict[str, Path]:
    """Packs registered by installed distributions: name -> directory."""
    found: dict[str, Path] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            module = ep.load()
            found[ep.name] = Path(next(iter(module.__path__)))
        except Exception as exc:  # a third-party distribution's error, reported by name
            raise ConfigError(
                f"pack {ep.name} ({ep.value}) cannot be found: {type(exc).__name__}: {exc}"
            ) from None
    return found


def shipped_packs() -> list[Pack]:
    """The packs shipped with soc-agent (package `soc_agent_packs`)."""
    root = Path(str(files("soc_agent_packs")))
    return [load_pack(d) for d in sorted(root.iterdir()) if (d / MANIFEST).is_file()]


def resolve(entry: str, base: Path | None) -> Pack:
    """A `packs:` entry: an installed pack's name, or a directory (relative to `base`)."""
    installed = installed_packs()
    if entry in installed:
        return load_pack(installed[entry])
    path = Path(entry)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_dir():
        known = ", ".join(sorted(installed)) or "none"
        raise ConfigError(
            f"no pack named {entry!r} is installed (installed: {known}) and no such directory",
            key="packs",
        )
    return load_pack(path)
