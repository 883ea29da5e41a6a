"""Microsoft Entra ID through Graph over real HTTP: tokens for graph.microsoft.com, user lookup,
disabling and enabling accounts, revoking sessions, verification, Graph errors and throttling."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from soc_agent_packs.identity.connectors.entra import Entra, EntraConfig

from soc_agent.actions.executor import Executor
from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConnectorError
from soc_agent.gateway import Gateway
from soc_agent.models import (
    ActionRequest,
    AutonomyLevel,
    Disposition,
    Entity,
    EntityType,
    RiskTier,
)
from soc_agent.models.ids import idempotency_key
from soc_agent.store import SQLiteStore
from tests.conftest import Clock
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.oauth_vendor import TokenEndpoint, form_of
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "entra"
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "c2b1a0f9-8e7d-4c6b-a5f4-e3d2c1b0a9f8"
CLIENT_SECRET = "Xy7~Qw3rTy9uIoP4aSdFgH2jKlZx7cVbNm5Lk0Jh"
UPN = "m.chen@contoso.com"
USER_ID = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
TOKEN = f"/{TENANT}/oauth2/v2.0/token"
BY_UPN = f"/v1.0/users/{UPN}"
BY_ID = f"/v1.0/users/{USER_ID}"
REVOKE = f"{BY_ID}/revokeSignInSessions"
Make = Callable[..., Entra]


def fx(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def user(enabled: bool = True) -> dict[str, Any]:
    body = fx("user")
    body["accountEnabled"] = enabled
    return body  # type: ignore[no-any-return]


@pytest.fixture
def tokens() -> TokenEndpoint:
    return TokenEndpoint(
        fx("token"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refused=Reply(401, fx("token_invalid_client")),
    )


@pytest.fixture
async def make(
    vendor_server: VendorServer,
    fake_time: FakeTime,
    tokens: TokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Make]:
    monkeypatch.setenv("ENTRA_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    vendor_server.route("POST", TOKEN, tokens)
    built: list[Entra] = []

    def build(**config: Any) -> Entra:
        config.setdefault("base_url", vendor_server.url)
        config.setdefault("authority", vendor_server.url)
        config.setdefault("tenant_id", TENANT)
        config.setdefault("client_id", "env:ENTRA_CLIENT_ID")
        config.setdefault("client_secret", "env:ENTRA_CLIENT_SECRET")
        conn = Entra(EntraConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def serve_user(vendor_server: VendorServer, tokens: TokenEndpoint, enabled: bool = True) -> None:
    vendor_server.route(
        "GET", BY_UPN, tokens.guard(Reply(200, user(enabled)), Reply(401, fx("error_401")))
    )


# --- OAuth2 for Graph -----------------------------------------------------------------------


async def test_token_is_requested_for_graph_and_reused(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens)
    conn = make()
    await conn.invoke("check_state", {"action": "disable_user", "target": UPN})
    await conn.invoke("check_state", {"action": "enable_user", "target": UPN})
    (token_request,) = vendor_server.calls("POST", TOKEN)
    assert form_of(token_request) == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "https://graph.microsoft.com/.default",
    }
    assert [r.header("authorization") for r in vendor_server.calls("GET")] == [
        f"Bearer {tokens.issued[0]}"
    ] * 2
    default = EntraConfig(tenant_id=TENANT, client_id=CLIENT_ID, client_secret="env:X")
    assert default.hosts == {"graph.microsoft.com", "login.microsoftonline.com"}


async def test_an_expired_token_is_replaced_once_on_401(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens)
    conn = make()
    await conn.invoke("check_state", {"action": "disable_user", "target": UPN})
    tokens.revoke()
    out = await conn.invoke("check_state", {"action": "disable_user", "target": UPN})
    assert out["in_effect"] is False
    assert len(tokens.issued) == 2
    assert [r.header("authorization") for r in vendor_server.calls("GET")] == [
        f"Bearer {tokens.issued[0]}",
        f"Bearer {tokens.issued[0]}",
        f"Bearer {tokens.issued[1]}",
    ]


async def test_a_refused_client_reports_aadsts_without_secrets(
    make: Make, vendor_server: VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "Wr0ng~SecretWr0ng~SecretWr0ng~Secret11"
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", wrong)
    with pytest.raises(ConnectorError, match="AADSTS7000215: Invalid client secret") as err:
        await make().invoke("get_user", {"user": UPN})
    assert wrong not in str(err.value)
    assert vendor_server.calls("GET") == []


# --- users ----------------------------------------------------------------------------------


async def test_get_user_maps_graph_fields(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens)
    out = await make().invoke("get_user", {"user": UPN})
    assert out == {
        "user": UPN,
        "found": True,
        "id": USER_ID,
        "user_principal_name": UPN,
        "display_name": "Megan Chen",
        "mail": UPN,
        "account_enabled": True,
        "department": "Executive",
        "job_title": "Chief Executive Officer",
        "created": "2023-01-09T08:21:37Z",
        "last_password_change": "2026-08-14T07:02:11Z",
        "sessions_valid_from": "2026-05-02T13:45:20Z",
    }
    (request,) = vendor_server.calls("GET", BY_UPN)
    assert request.query == {
        "$select": [
            "id,displayName,userPrincipalName,mail,accountEnabled,department,jobTitle,"
            "createdDateTime,lastPasswordChangeDateTime,signInSessionsValidFromDateTime"
        ]
    }


async def test_an_unknown_user_is_not_found(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", "/v1.0/users/j.doe@contoso.com", Reply(404, fx("error_404")))
    out = await make().invoke("get_user", {"user": "j.doe@contoso.com"})
    assert out["found"] is False and out["id"] is None
    with pytest.raises(ConnectorError, match=r"no user 'j\.doe@contoso\.com'"):
        await make().invoke("disable_user", {"target": "j.doe@contoso.com"})
    assert vendor_server.calls("PATCH") == []


async def test_a_bare_username_gets_the_upn_domain(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens)
    vendor_server.route("GET", BY_ID, Reply(200, user()))
    conn = make(upn_domain="contoso.com")
    assert (await conn.invoke("get_user", {"user": "m.chen"}))["id"] == USER_ID
    assert (await conn.invoke("get_user", {"user": USER_ID}))["id"] == USER_ID
    assert [r.path for r in vendor_server.calls("GET")] == [BY_UPN, BY_ID]


# --- account containment --------------------------------------------------------------------


async def test_disable_user_sets_account_enabled_false(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens)
    vendor_server.route("PATCH", BY_ID, Reply(204))
    out = await make().invoke("disable_user", {"target": UPN, "reason": "impossible travel"})
    assert out == {
        "action": "disable_user",
        "target": UPN,
        "vendor_id": USER_ID,
        "state": "disabled",
        "changed": True,
        "request_id": None,
    }
    (patch,) = vendor_server.calls("PATCH", BY_ID)
    assert patch.json() == {"accountEnabled": False}
    assert patch.header("content-type") == "application/json"
    assert patch.header("authorization") == f"Bearer {tokens.issued[0]}"


async def test_enable_user_sets_account_enabled_true(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens, enabled=False)
    vendor_server.route("PATCH", BY_ID, Reply(204))
    out = await make().invoke("enable_user", {"target": UPN})
    assert (out["state"], out["changed"]) == ("enabled", True)
    (patch,) = vendor_server.calls("PATCH", BY_ID)
    assert patch.json() == {"accountEnabled": True}


async def test_disabling_a_disabled_account_sends_nothing(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens, enabled=False)
    out = await make().invoke("disable_user", {"target": UPN})
    assert (out["state"], out["changed"]) == ("disabled", False)
    assert vendor_server.calls("PATCH") == []


async def test_revoke_sessions_posts_revoke_sign_in_sessions(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_user(vendor_server, tokens)
    vendor_server.route("POST", REVOKE, Reply(200, fx("revoke_sign_in_sessions")))
    out = await make().invoke("revoke_sessions", {"target": UPN})
    assert (out["state"], out["vendor_id"], out["changed"]) == ("sessions revoked", USER_ID, True)
    (post,) = vendor_server.calls("POST", REVOKE)
    assert post.body == b""
    assert post.header("authorization") == f"Bearer {tokens.issued[0]}"
    assert Entra.capabilities()["revoke_sessions"].reversible is False


@pytest.mark.parametrize(
    ("action", "enabled", "in_effect"),
    [
        ("disable_user", False, True),
        ("disable_user", True, False),
        ("enable_user", True, True),
        ("enable_user", False, False),
    ],
)
async def test_check_state_reads_account_enabled(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    action: str,
    enabled: bool,
    in_effect: bool,
) -> None:
    serve_user(vendor_server, tokens, enabled=enabled)
    out = await make().invoke("check_state", {"action": action, "target": UPN})
    assert out == {
        "action": action,
        "target": UPN,
        "in_effect": in_effect,
        "state": "enabled" if enabled else "disabled",
        "vendor_id": USER_ID,
    }
    (request,) = vendor_server.calls("GET", BY_UPN)
    assert request.query == {"$select": ["id,userPrincipalName,accountEnabled"]}


# --- Graph errors and throttling ------------------------------------------------------------


async def test_403_is_reported_and_not_retried(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_user(vendor_server, tokens)
    vendor_server.route("PATCH", BY_ID, Reply(403, fx("error_403")))
    with pytest.raises(
        ConnectorError, match=r"PATCH /v1.0/users/.*HTTP 403: Authorization_RequestDenied"
    ):
        await make().invoke("disable_user", {"target": UPN})
    assert len(vendor_server.calls("PATCH")) == 1 and fake_time.sleeps == []


async def test_429_on_a_patch_waits_for_retry_after(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_user(vendor_server, tokens)
    vendor_server.route(
        "PATCH", BY_ID, Reply(429, fx("error_429"), headers={"Retry-After": "3"}), Reply(204)
    )
    out = await make().invoke("disable_user", {"target": UPN})
    assert out["changed"] is True and fake_time.sleeps == [3.0]
    assert [r.json() for r in vendor_server.calls("PATCH")] == [{"accountEnabled": False}] * 2


async def test_503_is_retried_then_answers(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", BY_UPN, Reply(503, fx("error_503")), Reply(200, user()))
    out = await make().invoke("get_user", {"user": UPN})
    assert out["found"] is True and fake_time.sleeps == [0.5]


async def test_a_slow_graph_times_out(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", BY_UPN, Reply(200, user(), delay=0.6))
    with pytest.raises(ConnectorError, match=r"timed out after 0\.2s"):
        await make(timeout_seconds=0.2, max_retries=0).invoke("get_user", {"user": UPN})


async def test_tokens_never_reach_logs_or_errors(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve_user(vendor_server, tokens)

    def echo(request: RecordedRequest) -> Reply:
        body = fx("error_403")
        body["error"]["message"] = f"{request.header('authorization')} lacks RevokeSessions"
        return Reply(403, body)

    vendor_server.route("POST", REVOKE, echo)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError) as err:
        await make().invoke("revoke_sessions", {"target": UPN})
    assert "Bearer [REDACTED] lacks RevokeSessions" in str(err.value)
    for value in (CLIENT_SECRET, *tokens.issued):
        assert value not in str(err.value) and value not in caplog.text


# --- the executor picks the name Entra needs --------------------------------------------------


async def test_an_account_known_by_its_short_name_is_disabled_through_its_upn(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    store: SQLiteStore,
    audit: SQLiteAuditLog,
    clock: Clock,
) -> None:
    # The incident first named the person `mchen` (a Windows logon); a Graph alert added
    # the UPN and object id as aliases. No upn_domain is configured: only the alias can
    # reach the account, and verification must ask about the same account.
    serve_user(vendor_server, tokens)
    vendor_server.route("PATCH", BY_ID, Reply(204))
    gateway = Gateway(
        {"entra": make()}, {"entra": ["user:disable", "idp:read"]}, audit, clock=clock
    )
    target = Entity(
        type=EntityType.USER,
        value="mchen",
        aliases={"sam": "mchen", "upn": UPN, "object_id": USER_ID},
    )
    key = idempotency_key("inc-7", "disable_user", target)
    request = ActionRequest(
        id=f"act-{key[:16]}",
        action="disable_user",
        target=target,
        connector="entra",
        capability="disable_user",
        playbook_rule="contain",
        disposition=Disposition.EXECUTED,
        rule="threshold.execute",
        reason="impossible travel",
        autonomy=AutonomyLevel.OBSERVER,
        reversible=True,
        rollback_capability="enable_user",
        risk=RiskTier.HIGH,
        idempotency_key=key,
    )
    outcome = await Executor(store, gateway, audit, actor="soc-agent", clock=clock).execute(
        request, "inc-7"
    )
    assert (outcome.status, outcome.performed) == ("executed", True)
    assert {r.path for r in vendor_server.calls("GET")} == {BY_UPN}
    (patch,) = vendor_server.calls("PATCH", BY_ID)
    assert patch.json() == {"accountEnabled": False}
