"""OIDC bearer tokens against a JWKS served over real loopback HTTP.

An RSA key pair is generated here; the issuer's discovery document and JWKS are
served by a real HTTP server, and tokens are minted with PyJWT: valid,
expired, wrong issuer, wrong audience, unknown kid, wrong key, no role, and an
HS256 token keyed with the public key (algorithm confusion).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.integration.api.conftest import Api, open_api, running_server
from tests.integration.conftest import Deployment

AUDIENCE = "soc-agent"


@dataclass
class Issuer:
    """A minimal OpenID provider: discovery document and JWKS, with a request log."""

    url: str
    key: rsa.RSAPrivateKey
    hits: list[str] = field(default_factory=list)
    kid: str = "key-1"

    def mint(
        self, *, key: Any = None, kid: str | None = None, alg: str = "RS256", **claims: Any
    ) -> str:
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "00u1a2b3c4",
            "preferred_username": "olivia",
            "roles": ["analyst"],
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    state: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer: Issuer = state["issuer"]
            issuer.hits.append(self.path)
            if self.path == "/.well-known/openid-configuration":
                doc: dict[str, Any] = {"issuer": issuer.url, "jwks_uri": issuer.url + "/keys"}
            elif self.path == "/keys":
                doc = {"keys": [{**jwk, "kid": issuer.kid, "use": "sig", "alg": "RS256"}]}
            else:
                self.send_error(404)
                return
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["issuer"] = Issuer(f"http://127.0.0.1:{server.server_address[1]}", key)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state["issuer"]
    server.shutdown()
    server.server_close()


@pytest.fixture
async def oidc_api(deployment: Deployment, issuer: Issuer) -> AsyncIterator[Api]:
    settings, tokens = await open_api(
        deployment,
        api={
            "oidc": {
                "issuer": issuer.url,
                "audience": AUDIENCE,
                "role_map": {"analyst": "analyst", "soc-seniors": "senior"},
            }
        },
    )
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            yield Api(url, tokens, deployment, settings, client)


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


async def _me(api: Api, token: str) -> httpx.Response:
    return await api.client.get(
        api.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_valid_token_authenticates_and_its_user_is_audited(
    oidc_api: Api, issuer: Issuer
) -> None:
    token = issuer.mint()
    r = await _me(oidc_api, token)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "name": "olivia",
        "identity": "oidc:olivia",
        "role": "analyst",
        "source": "oidc",
        "may_approve": ["low", "medium"],
    }
    proposal = await oidc_api.proposal("quarantine_file")
    approve = await oidc_api.client.post(
        f"{oidc_api.url}/api/v1/proposals/{proposal.id}/approve",
        headers={"Authorization": f"Bearer {token}"},
        json={"comment": "via sso"},
    )
    assert approve.status_code == 200
    (event,) = [e for e in await oidc_api.audit(subject=proposal.id) if e["action"].endswith("ve")]
    assert (event["actor"], event["reason"]) == ("oidc:olivia", "via sso")
    # A role below the one the risk tier needs is still refused.
    isolate = await oidc_api.proposal("isolate_host")
    refused = await oidc_api.client.post(
        f"{oidc_api.url}/api/v1/proposals/{isolate.id}/approve",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 403
    senior = issuer.mint(preferred_username="oscar", roles=["soc-seniors", "unmapped"])
    assert (await _me(oidc_api, senior)).json()["role"] == "senior"


async def test_keys_are_discovered_once_and_cached(oidc_api: Api, issuer: Issuer) -> None:
    for _ in range(5):
        assert (await _me(oidc_api, issuer.mint())).status_code == 200
    assert issuer.hits == ["/.well-known/openid-configuration", "/keys"]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"iss": "https://evil.example"}, "another issuer"),
        ({"aud": "some-other-app"}, "audience"),
        ({"roles": ["marketing"]}, "no soc-agent role"),
        ({"roles": None}, "no soc-agent role"),
        ({"sub": None}, "sub"),
    ],
)
async def test_bad_claims_are_refused(
    oidc_api: Api, issuer: Issuer, claims: dict[str, Any], reason: str
) -> None:
    r = await _me(oidc_api, issuer.mint(**claims))
    assert r.status_code == 401
    assert reason in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


async def test_unknown_kid_refetches_at_most_once_then_refuses(
    oidc_api: Api, issuer: Issuer
) -> None:
    assert (await _me(oidc_api, issuer.mint())).status_code == 200
    for _ in range(3):
        r = await _me(oidc_api, issuer.mint(kid="rotated-away"))
        assert r.status_code == 401
        assert "unknown signing key" in r.json()["detail"]
    # Just fetched: an unknown kid does not let callers hammer the issuer.
    assert issuer.hits.count("/keys") == 1


async def test_signatures_must_come_from_the_issuer_key(oidc_api: Api, issuer: Issuer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = await _me(oidc_api, issuer.mint(key=other))
    assert forged.status_code == 401
    assert "signature" in forged.json()["detail"].lower()
    # Algorithm confusion: HS256 keyed with the public key must not pass. (PyJWT refuses
    # to mint it, so it is built by hand, as an attacker would.)
    public_pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "roles": ["admin"], "exp": 2**31}
    signing_input = (
        _b64({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}) + "." + _b64(claims)
    ).encode()
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    confused = (
        signing_input.decode() + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")
    )
    r = await _me(oidc_api, confused)
    assert r.status_code == 401
    assert "not accepted" in r.json()["detail"]


async def test_without_oidc_configured_jwts_are_refused(api: Api, issuer: Issuer) -> None:
    r = await _me(api, issuer.mint())
    assert r.status_code == 401
    assert "not configured" in r.json()["detail"]
    assert issuer.hits == []
