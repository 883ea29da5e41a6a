"""Files named in connector settings stay inside the directories configured for them.

A `file:` credential reference, or a connector's data file (intel list, event
file, journal, outbox: settings marked `DATA_PATH`), may otherwise point
anywhere the agent's user can read or write: `file:/etc/shadow` as an "API
key" that a connector then sends to its vendor, or a journal appended to a
system file. After following symlinks, each must lie in one of
`secret_dirs` or `data_dirs`; otherwise start-up fails naming the setting
(never the secret). The agent's own `file:` credentials (`llm.api_key`) are
held to `secret_dirs` the same way, and a `file:` credential is re-checked at
every read, since it is re-read whenever the file changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from soc_agent_connectors import DATA_PATH, SecretRef, SecretUnavailableError

from soc_agent.errors import ConfigError
from soc_agent.settings import Settings

__all__ = [
    "allowed_data_dirs",
    "allowed_secret_dirs",
    "check_confined",
    "check_settings_confined",
]

_MARK = next(iter(DATA_PATH))


def allowed_secret_dirs(settings: Settings) -> list[Path]:
    """`secret_dirs`, plus the config file's own directory."""
    dirs = list(settings.secret_dirs)
    if settings.config is not None:
        dirs.append(settings.config.parent)
    return dirs


def allowed_data_dirs(settings: Settings) -> list[Path]:
    """`data_dirs`, plus the store's and the config file's directories and the shipped samples."""
    dirs = [*settings.data_dirs, settings.store.parent]
    if settings.config is not None:
        dirs.append(settings.config.parent)
    dirs.append(Path(str(files("soc_agent_samples"))))
    return dirs


def check_confined(settings: Settings, name: str, config: BaseModel) -> None:
    """Raise ConfigError for the first file setting of connector `name` outside its
    allowed directories."""
    _check(settings, config, f"connectors.{name}")


def check_settings_confined(settings: Settings) -> None:
    """The same for `file:` credentials in the agent's own settings (`llm.api_key`)."""
    _check(settings, settings, "")


def _check(settings: Settings, config: Any, prefix: str) -> None:
    secret_dirs = _real(allowed_secret_dirs(settings))
    data_dirs = _real(allowed_data_dirs(settings))
    for key, value, is_data in _files(config, prefix):
        if isinstance(value, SecretRef):
            try:
                # Also re-checked at every read: the file may later become a symlink out.
                value.confine(secret_dirs)
            except SecretUnavailableError:
                raise ConfigError(
                    f"{value.reference} is outside the secret directories "
                    f"({', '.join(map(str, secret_dirs))}); add its directory to secret_dirs",
                    key=key,
                ) from None
        elif is_data and not _inside(Path(value), data_dirs):
            raise ConfigError(
                f"{value} is outside the data directories "
                f"({', '.join(map(str, data_dirs))}); add its directory to data_dirs",
                key=key,
            )


def _files(model: Any, prefix: str) -> Iterator[tuple[str, Any, bool]]:
    """(setting, value, is a data path) for every file: secret and marked data path."""
    if not isinstance(model, BaseModel):
        return
    for field_name, info in type(model).model_fields.items():
        value = getattr(model, field_name)
        key = f"{prefix}.{field_name}" if prefix else field_name
        extra = info.json_schema_extra
        if isinstance(value, SecretRef) and value.kind == "file":
            yield key, value, False
        elif isinstance(extra, dict) and extra.get(_MARK) and isinstance(value, str) and value:
            yield key, value, True
        elif isinstance(value, BaseModel):
            yield from _files(value, key)


def _real(dirs: list[Path]) -> list[Path]:
    return [Path(os.path.realpath(d)) for d in dirs]


def _inside(path: Path, dirs: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == d or d in real.parents for d in dirs)
