"""Loading the offline connectors' data files (YAML or JSON lines)."""

from __future__ import annotations

import errno
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

from soc_agent.errors import ConfigError, ConnectorError

# Marks a connector setting that names a file the connector reads or writes, so the agent
# can confine it to the configured data directories: `Field(..., json_schema_extra=DATA_PATH)`.
DATA_PATH: dict[str, Any] = {"x-soc-agent-data-path": True}

_Entry = TypeVar("_Entry", bound=BaseModel)

__all__ = [
    "DATA_PATH",
    "load_jsonl",
    "load_records",
    "load_yaml",
    "open_own_for_read",
    "open_private_for_append",
    "resolve_data_path",
]


def resolve_data_path(path: str | None, default_sample: str) -> Path:
    """The configured file, or the demo file shipped in `soc_agent_samples`."""
    if path:
        return Path(path)
    return Path(str(files("soc_agent_samples").joinpath(default_sample)))


def load_yaml(path: Path, *, connector: str) -> Any:
    return _parse(_read(path, connector=connector), path)


def _read(path: Path, *, connector: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"data file not found: {path}", key=f"connectors.{connector}.path"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the data file: {exc.strerror}", source=str(path)) from None


def _parse(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The mark goes into the error's line, not into the message a second time.
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(exc, 'problem', None) or exc}",
            source=str(path),
            line=mark.line + 1 if mark is not None else None,
        ) from None


def load_records(path: Path, key: str, *, connector: str, entry: type[_Entry]) -> list[_Entry]:
    """The entries listed under `key` in a YAML data file, each validated as `entry`: a file
    of another shape names itself, the entry and field at fault, and its line."""
    text = _read(path, connector=connector)
    raw = _parse(text, path)
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping with `{key}:`", source=str(path))
    items = raw.get(key, [])
    if not isinstance(items, list):
        raise ConfigError("expected a list", source=str(path), key=key)
    out: list[_Entry] = []
    for i, item in enumerate(items):
        try:
            out.append(entry.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = [str(part) for part in err["loc"]]
            shown = "" if isinstance(err["input"], dict) else f" (got {str(err['input'])[:60]!r})"
            raise ConfigError(
                f"{err['msg']}{shown}",
                source=str(path),
                key=".".join([f"{key}[{i}]", *field]),
                line=_line_of(text, key, i, field[:1]),
            ) from None
    return out


def _line_of(text: str, key: str, index: int, field: list[str]) -> int | None:
    """The line of entry `index` under `key` (of its `field` if given), read from the node
    tree; only on the error path, so valid files are parsed once."""
    node: Node | None = yaml.compose(text)
    for step in (key, index, *field):
        if isinstance(node, MappingNode):
            node = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, SequenceNode) and isinstance(step, int):
            node = node.value[step] if step < len(node.value) else None
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


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
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the data file: {exc.strerror}", source=str(path)) from None
    return out


def open_private_for_append(path: Path) -> TextIO:
    """A journal opened for appending, created readable by its owner only (0600), never
    through a symbolic link (whoever can write its directory could redirect the appends)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(_open_own(path, flags), "a", encoding="utf-8")


def open_own_for_read(path: Path) -> BinaryIO:
    """A journal this connector writes, opened to read it back, never through a link;
    FileNotFoundError when there is none yet."""
    return os.fdopen(_open_own(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def _open_own(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o600)  # the mode applies only when O_CREAT creates it
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConnectorError(
                f"{path} is a symbolic link: refused (the agent writes its own files only)"
            ) from None
        raise
