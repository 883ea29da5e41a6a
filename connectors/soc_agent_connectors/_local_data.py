"""Loading the offline connectors' data files (YAML or JSON lines)."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, TextIO

import yaml

from soc_agent.errors import ConfigError

# Marks a connector setting that names a file the connector reads or writes, so the agent
# can confine it to the configured data directories: `Field(..., json_schema_extra=DATA_PATH)`.
DATA_PATH: dict[str, Any] = {"x-soc-agent-data-path": True}

__all__ = [
    "DATA_PATH",
    "load_jsonl",
    "load_records",
    "load_yaml",
    "open_private_for_append",
    "resolve_data_path",
]


def resolve_data_path(path: str | None, default_sample: str) -> Path:
    """The configured file, or the demo file shipped in `soc_agent_samples`."""
    if path:
        return Path(path)
    return Path(str(files("soc_agent_samples").joinpath(default_sample)))


def load_yaml(path: Path, *, connector: str) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"data file not found: {path}", key=f"connectors.{connector}.path"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the data file: {exc.strerror}", source=str(path)) from None


def load_records(path: Path, key: str, *, connector: str, needs: tuple[str, ...]) -> list[Any]:
    """The mappings listed under `key` in a YAML data file, each holding `needs`; a file of
    another shape names itself and the entry at fault."""
    raw = load_yaml(path, connector=connector)
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping with `{key}:`", source=str(path))
    items = raw.get(key, [])
    if not isinstance(items, list):
        raise ConfigError("expected a list", source=str(path), key=key)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or any(item.get(n) in (None, "") for n in needs):
            wanted = " and ".join(f"`{n}`" for n in needs)
            raise ConfigError(f"each entry needs {wanted}", source=str(path), key=f"{key}[{i}]")
    return items


def load_jsonl(path: Path, *, connector: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        f"invalid JSON: {exc.msg}", source=str(path), line=lineno
                    ) from None
                if isinstance(record, dict):
                    out.append(record)
    except FileNotFoundError:
        raise ConfigError(
            f"data file not found: {path}", key=f"connectors.{connector}.path"
        ) from None
    return out


def open_private_for_append(path: Path) -> TextIO:
    """A journal opened for appending, created readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")
