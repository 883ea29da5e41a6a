"""Test pieces for OAuth2 vendors: a client-credentials token endpoint and a bearer check.

`TokenEndpoint` is a `vendor_server` reply callable that answers the token
request the way the vendor documents it (its recorded token response, with a
fresh numbered `access_token` each time) after checking the form; tests
`revoke()` tokens to make the API answer 401 the way a vendor does when a
token is revoked or has expired on its side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from tests.integration.connectors.vendor_server import RecordedRequest, Reply

__all__ = ["TokenEndpoint", "form_of"]


def form_of(request: RecordedRequest) -> dict[str, str]:
    """An x-www-form-urlencoded body as a dict (single values)."""
    return {k: v[0] for k, v in parse_qs(request.body.decode("utf-8")).items()}


class TokenEndpoint:
    """Issues tokens shaped like `template` to the right client; refuses anyone else."""

    def __init__(
        self,
        template: dict[str, Any],
        *,
        client_id: str,
        client_secret: str,
        refused: Reply,
        status: int = 200,
    ) -> None:
        self._template = template
        self._client_id, self._client_secret = client_id, client_secret
        self._refused = refused
        self._status = status
        self.issued: list[str] = []
        self._valid: set[str] = set()

    def __call__(self, request: RecordedRequest) -> Reply:
        form = form_of(request)
        if (
            form.get("client_id") != self._client_id
            or form.get("client_secret") != self._client_secret
        ):
            return self._refused
        base = str(self._template["access_token"])
        token = f"{base[:-6]}{len(self.issued) + 1:06d}"
        self.issued.append(token)
        self._valid.add(token)
        return Reply(self._status, {**self._template, "access_token": token})

    def revoke(self) -> None:
        """Every token issued so far is now refused by the API (401)."""
        self._valid.clear()

    def valid(self, request: RecordedRequest) -> bool:
        header = request.header("authorization") or ""
        return header.startswith("Bearer ") and header[len("Bearer ") :] in self._valid

    def guard(
        self, ok: Reply | Callable[[RecordedRequest], Reply], unauthorized: Reply
    ) -> Callable[[RecordedRequest], Reply]:
        """A route reply that answers `unauthorized` unless a valid bearer token is sent."""

        def answer(request: RecordedRequest) -> Reply:
            if not self.valid(request):
                return unauthorized
            return ok if isinstance(ok, Reply) else ok(request)

        return answer
