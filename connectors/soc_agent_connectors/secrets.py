"""Credential references: where a secret lives, never the secret itself.

`env:NAME` reads an environment variable at every use; `file:/path` reads a
file and re-reads it when its modification time, size or inode changes (a
rotated Kubernetes secret, a renewed token file), so credentials rotate
without a restart. A literal value is accepted only where the configuration
explicitly allows it. The value never appears in `repr`, `str`, errors or
serialised configuration.

Every source is trimmed of surrounding whitespace (a Kubernetes secret created
from a file ends with a newline, which would otherwise be sent, refused by the
HTTP client and echoed escaped in its error), and a value with control or
format characters inside is refused: no credential contains them, and they
defeat exact-value scrubbing.

The agent confines `file:` references to its secret directories (`confine`);
the check is repeated at every read, as the file itself is.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from soc_agent.errors import ConnectorError

__all__ = ["SecretRef", "SecretUnavailableError"]

SecretKind = Literal["env", "file", "literal"]


class SecretUnavailableError(ConnectorError):
    """The referenced secret cannot be read (unset variable, missing file); names the reference."""


class SecretRef:
    """A reference to a credential: `env:NAME`, `file:/path`, or (if allowed) a literal."""

    __slots__ = ("_dirs", "_key", "_kind", "_lock", "_source", "_stamp", "_value")

    def __init__(self, spec: str) -> None:
        spec = spec.strip()
        if not spec:
            raise ValueError("a credential reference must not be empty")
        kind: SecretKind
        if spec.startswith("env:"):
            kind, source = "env", spec[4:]
            if not source.replace("_", "").isalnum():
                raise ValueError("env: needs an environment variable name, e.g. env:VT_API_KEY")
        elif spec.startswith("file:"):
            kind, source = "file", spec[5:]
            if not source:
                raise ValueError("file: needs a path, e.g. file:/run/secrets/vt_api_key")
        else:
            kind, source = "literal", spec
        self._kind: SecretKind = kind
        self._source = source
        self._key = spec
        self._value: str | None = None
        if kind == "literal":
            try:
                self._value = self._clean(source)
            except SecretUnavailableError:
                raise ValueError(
                    "a literal credential must not contain control characters"
                ) from None
        self._stamp: tuple[int, int, int] | None = None
        self._dirs: tuple[Path, ...] | None = None
        self._lock = threading.Lock()

    @property
    def kind(self) -> SecretKind:
        return self._kind

    @property
    def reference(self) -> str:
        """What can be shown: `env:NAME`, `file:/path`, or `literal` (never the value)."""
        return "literal" if self._kind == "literal" else self._key

    def confine(self, dirs: Sequence[Path]) -> None:
        """Read a `file:` reference only while it resolves (symlinks followed) inside one
        of `dirs`; raises SecretUnavailableError if it does not now. Checked at every read,
        since the file is re-read when it changes: a symlink swapped in later is refused too."""
        self._dirs = tuple(Path(os.path.realpath(d)) for d in dirs)
        if self._kind == "file":
            self._check_inside()

    def _check_inside(self) -> None:
        if self._dirs is None:
            return
        real = Path(os.path.realpath(self._source))
        if not any(real == d or d in real.parents for d in self._dirs):
            raise SecretUnavailableError(
                f"credentials {self._key}: the file is outside the secret directories "
                f"({', '.join(map(str, self._dirs))})"
            )

    def get(self) -> str:
        """The current value; a file is re-read when it changed on disk."""
        if self._kind == "env":
            return self._read_env()
        if self._kind == "literal":
            assert self._value is not None
            return self._value
        return self._read_file(force=False)

    def refresh(self) -> tuple[str, bool]:
        """Re-read unconditionally (after a 401): the value, and whether it changed."""
        with self._lock:
            before = self._value
        value = self.get() if self._kind != "file" else self._read_file(force=True)
        return value, value != before

    def _clean(self, value: str) -> str:
        value = value.strip()
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
            raise SecretUnavailableError(
                f"credentials {self.reference}: the value contains control characters"
            )
        return value

    def _read_env(self) -> str:
        value = self._clean(os.environ.get(self._source) or "")
        if not value:
            raise SecretUnavailableError(
                f"credentials {self._key}: environment variable {self._source} is not set"
            )
        with self._lock:
            self._value = value
        return value

    def _read_file(self, *, force: bool) -> str:
        self._check_inside()
        path = Path(self._source)
        try:
            st = path.stat()
        except OSError as exc:
            raise SecretUnavailableError(
                f"credentials {self._key}: cannot read the file ({exc.strerror or 'error'})"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if not force and self._value is not None and stamp == self._stamp:
                return self._value
        try:
            value = self._clean(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SecretUnavailableError(
                f"credentials {self._key}: cannot read the file ({reason or 'error'})"
            ) from None
        if not value:
            raise SecretUnavailableError(f"credentials {self._key}: the file is empty")
        with self._lock:
            self._value, self._stamp = value, stamp
        return value

    def __repr__(self) -> str:
        return f"SecretRef({self.reference!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and other._key == self._key

    def __hash__(self) -> int:
        return hash(("SecretRef", self._key))

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a SecretRef is not picklable")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretRef:
            if isinstance(value, SecretRef):
                return value
            if not isinstance(value, str):
                raise ValueError("expected a string such as env:NAME or file:/path")
            return cls(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda ref: ref.reference, when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "description": "env:NAME or file:/path (a literal only if allowed)",
            "examples": ["env:VT_API_KEY", "file:/run/secrets/vt_api_key"],
        }
