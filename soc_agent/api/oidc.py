"""OpenID Connect bearer tokens: JWTs checked against the issuer's published keys (JWKS).

Keys are fetched with the one long-lived httpx client and cached for
`jwks_cache_seconds`; a token naming an unknown `kid` triggers at most one
refetch per `_REFETCH_SECONDS` (key rotation without a stampede). Signature,
`iss`, `aud` and `exp` are always checked; only asymmetric algorithms are
accepted, and only those configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from soc_agent.api.identity import Principal
from soc_agent.errors import SocAgentError
from soc_agent.models import Role
from soc_agent.settings.api import OidcConfig

__all__ = ["OidcError", "OidcVerifier", "looks_like_jwt"]

log = logging.getLogger(__name__)

_REFETCH_SECONDS = 10.0


class OidcError(SocAgentError):
    """The bearer JWT was not accepted; the message says why (never the token)."""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


class OidcVerifier:
    def __init__(self, config: OidcConfig, client: httpx.AsyncClient) -> None:
        self._config = config
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._jwks_url = config.jwks_url
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        cfg = self._config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"malformed token: {exc}") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OidcError("token header has no kid")
        if header.get("alg") not in cfg.algorithms:
            raise OidcError(f"algorithm {str(header.get('alg'))[:16]!r} is not accepted")
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=cfg.algorithms,
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("token has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError("token is not meant for this audience") from None
        except jwt.InvalidIssuerError:
            raise OidcError("token is from another issuer") from None
        except jwt.PyJWTError as exc:
            raise OidcError(f"token rejected: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        cfg = self._config
        name = claims.get(cfg.username_claim) or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise OidcError(f"token has no {cfg.username_claim} or sub claim")
        raw = claims.get(cfg.role_claim, [])
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = [cfg.role_map[v] for v in values if isinstance(v, str) and v in cfg.role_map]
        if not roles:
            raise OidcError(f"token grants no soc-agent role (claim {cfg.role_claim!r})")
        role = max(roles, key=lambda r: r.rank)
        exp = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return Principal(name=name[:128], role=Role(role), source="oidc", expires_at=exp)

    async def _key(self, kid: str) -> jwt.PyJWK:
        if self._age() < self._config.jwks_cache_seconds and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            stale = self._age() >= self._config.jwks_cache_seconds
            if stale or (kid not in self._keys and self._age() >= _REFETCH_SECONDS):
                await self._refresh()
        if kid not in self._keys:
            raise OidcError(f"unknown signing key {kid[:64]!r}")
        return self._keys[kid]

    def _age(self) -> float:
        """Seconds since the keys were last fetched (infinite before the first fetch)."""
        if self._fetched_at is None:
            return float("inf")
        return time.monotonic() - self._fetched_at

    async def _refresh(self) -> None:
        try:
            if self._jwks_url is None:
                discovery = await self._get_json(
                    self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                url = discovery.get("jwks_uri")
                if not isinstance(url, str):
                    raise OidcError("the issuer's discovery document has no jwks_uri")
                self._jwks_url = url
            document = await self._get_json(self._jwks_url)
        except (httpx.HTTPError, ValueError) as exc:
            # Keep serving with the keys we have; record why the refresh failed.
            log.warning("cannot fetch the OIDC signing keys: %s", exc)
            self._fetched_at = time.monotonic()
            return
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in document.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or "kid" not in jwk:
                continue
            try:
                keys[str(jwk["kid"])] = jwt.PyJWK(jwk)
            except jwt.PyJWTError as exc:
                log.warning("skipping unusable JWKS key %s: %s", jwk.get("kid"), exc)
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._client.get(url, timeout=self._config.timeout_seconds)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return data
