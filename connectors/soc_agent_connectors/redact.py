"""Scrubbing secrets out of text and data before it reaches a log, an error or the audit chain.

Two layers: the exact values of credentials a connector has read (always
replaced, wherever they appear, and in every encoding a message may carry
them: escaped as in a repr or JSON, percent-encoded as in a URL, base64 as in
a header or body), and the common shapes of secrets (Authorization headers,
Bearer/Basic/SSWS values, `apikey=`/`token=` query parameters,
`"password": ...` pairs) for anything we have not seen.

`scrub_known` applies only the first layer, for connector results: evidence
keeps its words (a log line saying `token=` is evidence), but never a secret
the vendor echoed back.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "is_sensitive_key",
    "redact_data",
    "redact_text",
    "scrub_known",
]

REDACTED = "[REDACTED]"

# Values shorter than this are not scrubbed by value: replacing "a" everywhere would
# destroy the message without protecting anything.
_MIN_SECRET_LEN = 4

_KEY_WORDS = (
    r"(?:x[-_])?api[-_]?key|apikey|key|access[-_]?token|refresh[-_]?token|id[-_]?token|token"
    r"|client[-_]?secret|secret|password|passwd|pwd|auth|signature|sig|session[-_]?id"
)
_SENSITIVE_KEY = re.compile(
    rf"^(?:authorization|proxy-authorization|cookie|set-cookie|{_KEY_WORDS})$", re.IGNORECASE
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: <scheme> <value>   (header dumps, curl lines, reprs)
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"),
        rf"\1{REDACTED}",
    ),
    # scheme tokens wherever they appear on their own; Basic/SSWS only when the value
    # looks encoded, so prose such as "basic validation" survives
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    (
        re.compile(r"(?i)\b(basic|ssws)\s+(?=[A-Za-z0-9._~+/=-]*[0-9=+/])[A-Za-z0-9._~+/=-]{8,}"),
        rf"\1 {REDACTED}",
    ),
    # key=value in query strings and form bodies
    (
        re.compile(rf"(?i)(?<![A-Za-z0-9_-])((?:{_KEY_WORDS})=)[^&\s\"'#]+"),
        rf"\1{REDACTED}",
    ),
    # "key": "value" / key: value in JSON, YAML and header dumps
    (
        re.compile(
            rf"(?i)([\"']?(?<![A-Za-z0-9_/.-])(?:{_KEY_WORDS})[\"']?\s*:\s*[\"']?)[^\"'\s,}}]+"
        ),
        rf"\1{REDACTED}",
    ),
)


@functools.lru_cache(maxsize=256)
def _encodings(secret: str) -> frozenset[str]:
    """The forms a secret takes in messages: raw, escaped, percent-encoded, base64."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret,
        secret.encode("unicode_escape").decode("ascii"),
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms |= {text, text.rstrip("=")}
    return frozenset(f for f in forms if len(f) >= _MIN_SECRET_LEN)


def _known_forms(secrets: Iterable[str]) -> list[str]:
    """Every encoding of every known secret, longest first (so no form is half-replaced)."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LEN:
            forms |= _encodings(secret)
    return sorted(forms, key=len, reverse=True)


def _replace_known(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return text


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret (in any encoding) and every secret-shaped token replaced."""
    text = _replace_known(text, _known_forms(secrets))
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_sensitive_key(key: str) -> bool:
    """True for mapping keys whose values are credentials (`api_key`, `Authorization`, ...)."""
    return bool(_SENSITIVE_KEY.match(key))


def redact_data(data: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of JSON-like `data` with sensitive keys blanked and every string scrubbed."""
    known = [s for s in secrets if len(s) >= _MIN_SECRET_LEN]
    return _redact(data, known)


def _redact(data: Any, secrets: list[str]) -> Any:
    if isinstance(data, str):
        return redact_text(data, secrets)
    if isinstance(data, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_sensitive_key(k) else _redact(v, secrets)
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [_redact(v, secrets) for v in data]
    return data


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from records (attached to `httpx`, `httpcore`).

    `secrets` is asked for the current known values at each record, so a
    rotated credential is covered as soon as it has been read.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]] = tuple) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message, self._secrets())
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def scrub_known(data: Any, secrets: Iterable[str]) -> Any:
    """JSON-like `data` with every known secret (in any encoding) replaced; `data` itself when
    there is nothing to scrub, so results of connectors without credentials cost nothing."""
    forms = _known_forms(secrets)
    return _scrub(data, forms) if forms else data


def _scrub(data: Any, forms: list[str]) -> Any:
    if isinstance(data, str):
        return _replace_known(data, forms)
    if isinstance(data, Mapping):
        return {k: _scrub(v, forms) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_scrub(v, forms) for v in data]
    return data
