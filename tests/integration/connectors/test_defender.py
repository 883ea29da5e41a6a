"""Microsoft Defender for Endpoint over real HTTP: tokens from the identity platform, machine
lookup, isolation and release, verification from machine actions, OData errors and limits."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors.defender import Defender, DefenderConfig

from soc_agent.errors import ConnectorError
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.oauth_vendor import TokenEndpoint, form_of
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "defender"
TENANT = "6f1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b"
CLIENT_ID = "3f9b6c1e-2d4a-4e8b-9c7d-5a1b2c3d4e5f"
CLIENT_SECRET = "pQ8~xV2mN5pL7kR3tW9yB4cF6hJ1gD0sA2eU8iO5"
MACHINE = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
FQDN = "ws-fin-042.corp.example.com"
TOKEN = f"/{TENANT}/oauth2/v2.0/token"
MACHINES = "/api/machines"
ACTIONS = "/api/machineactions"
ISOLATE = f"/api/machines/{MACHINE}/isolate"
UNISOLATE = f"/api/machines/{MACHINE}/unisolate"
Make = Callable[..., Defender]


def fx(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def history(*latest: tuple[str, str]) -> dict[str, Any]:
    """The machine's recorded actions (ends released), plus newer (type, status) actions."""
    body = fx("machineactions")
    for n, (kind, status) in enumerate(latest):
        entry = dict(body["value"][1], id=f"00000000-0000-4000-8000-{n:012d}")
        entry.update(type=kind, status=status, creationDateTimeUtc=f"2026-11-20T09:0{n}:00Z")
        body["value"].append(entry)
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
    monkeypatch.setenv("MDE_CLIENT_SECRET", CLIENT_SECRET)
    vendor_server.route("POST", TOKEN, tokens)
    built: list[Defender] = []

    def build(**config: Any) -> Defender:
        config.setdefault("base_url", vendor_server.url)
        config.setdefault("authority", vendor_server.url)  # the login authority, recorded
        config.setdefault("tenant_id", TENANT)
        config.setdefault("client_id", CLIENT_ID)
        config.setdefault("client_secret", "env:MDE_CLIENT_SECRET")
        conn = Defender(DefenderConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def serve_machine(
    vendor_server: VendorServer, tokens: TokenEndpoint, actions: dict[str, Any] | None = None
) -> None:
    def machines(request: RecordedRequest) -> Reply:
        assert request.query["$filter"] == [f"computerDnsName eq '{FQDN}'"]
        return Reply(200, fx("machines"))

    unauthorized = Reply(401, fx("error_401"))
    vendor_server.route("GET", MACHINES, tokens.guard(machines, unauthorized))
    vendor_server.route(
        "GET", ACTIONS, tokens.guard(Reply(200, actions or history()), unauthorized)
    )


# --- OAuth2 against the identity platform ---------------------------------------------------


async def test_token_request_follows_the_identity_platform_and_is_reused(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    conn = make()
    await conn.invoke("check_state", {"action": "isolate_host", "target": FQDN})
    await conn.invoke("check_state", {"action": "release_host", "target": FQDN})
    (token_request,) = vendor_server.calls("POST", TOKEN)
    assert form_of(token_request) == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "https://api.securitycenter.microsoft.com/.default",
    }
    api = [r for r in vendor_server.requests if r.path != TOKEN]
    assert len(api) == 4
    assert {r.header("authorization") for r in api} == {f"Bearer {tokens.issued[0]}"}


async def test_a_revoked_token_is_replaced_once_on_401(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    conn = make()
    await conn.invoke("check_state", {"action": "isolate_host", "target": FQDN})
    tokens.revoke()
    out = await conn.invoke("check_state", {"action": "isolate_host", "target": FQDN})
    assert out["in_effect"] is False
    assert len(tokens.issued) == 2
    assert vendor_server.calls("GET", ACTIONS)[-1].header("authorization") == (
        f"Bearer {tokens.issued[1]}"
    )


def test_the_login_authority_is_an_allowed_host() -> None:
    cfg = DefenderConfig(
        tenant_id=TENANT, client_id=CLIENT_ID, client_secret="env:MDE_CLIENT_SECRET"
    )
    assert cfg.token_url == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
    assert cfg.hosts == {"api.security.microsoft.com", "login.microsoftonline.com"}


async def test_a_refused_client_reports_aadsts_without_secrets(
    make: Make,
    vendor_server: VendorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng~SecretWr0ng~SecretWr0ng~Secret00"
    monkeypatch.setenv("MDE_CLIENT_SECRET", wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError) as err:
        await make().invoke("get_host", {"host": FQDN})
    assert f"POST /{TENANT}/oauth2/v2.0/token: HTTP 401" in str(err.value)
    assert "AADSTS7000215: Invalid client secret provided" in str(err.value)
    assert wrong not in str(err.value) and wrong not in caplog.text
    assert vendor_server.calls("GET", MACHINES) == []


# --- machine lookup -------------------------------------------------------------------------


async def test_get_host_maps_machine_fields(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    out = await make().invoke("get_host", {"host": FQDN})
    assert out == {
        "host": FQDN,
        "found": True,
        "machine_id": MACHINE,
        "hostname": FQDN,
        "health_status": "Active",
        "risk_score": "Medium",
        "exposure_level": "Low",
        "os_platform": "Windows11",
        "os_version": "23H2",
        "last_seen": "2026-11-20T08:51:43.5468902Z",
        "last_ip": "10.20.4.42",
        "tags": ["Finance", "Tier1"],
        "matches": 1,
    }


async def test_a_short_name_is_matched_to_the_fqdn(make: Make, vendor_server: VendorServer) -> None:
    empty = {"@odata.context": fx("machines")["@odata.context"], "value": []}
    vendor_server.route("GET", MACHINES, Reply(200, empty), Reply(200, fx("machines")))
    out = await make().invoke("get_host", {"host": "WS-FIN-042"})
    assert (out["found"], out["machine_id"]) == (True, MACHINE)
    assert [r.query["$filter"] for r in vendor_server.calls("GET", MACHINES)] == [
        ["computerDnsName eq 'ws-fin-042'"],
        ["startswith(computerDnsName,'ws-fin-042.')"],
    ]


async def test_an_unknown_machine_is_not_found(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", MACHINES, Reply(200, {"value": []}))
    out = await make().invoke("get_host", {"host": "srv-gone.corp.example.com"})
    assert out["found"] is False and out["machine_id"] is None
    assert len(vendor_server.calls("GET", MACHINES)) == 1  # an FQDN has no short-name fallback


# --- isolation ------------------------------------------------------------------------------


async def test_isolate_host_posts_the_documented_body(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    vendor_server.route("POST", ISOLATE, Reply(201, fx("machine_action_isolate")))
    out = await make().invoke(
        "isolate_host", {"target": FQDN, "reason": "score 95", "idempotency_key": "k1"}
    )
    assert out == {
        "action": "isolate_host",
        "target": FQDN,
        "vendor_id": MACHINE,
        "state": "Isolate Pending",
        "changed": True,
        "request_id": "b89eb834-4578-496c-8be0-03f004061435",
    }
    (post,) = vendor_server.calls("POST", ISOLATE)
    assert post.json() == {"Comment": "soc-agent: score 95 [k1]", "IsolationType": "Full"}
    assert post.header("content-type") == "application/json"
    assert post.header("authorization") == f"Bearer {tokens.issued[0]}"


async def test_release_host_posts_unisolate(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens, history(("Isolate", "Succeeded")))
    vendor_server.route("POST", UNISOLATE, Reply(201, fx("machine_action_unisolate")))
    out = await make(isolation_type="Selective").invoke(
        "release_host", {"target": FQDN, "reason": "false positive"}
    )
    assert (out["state"], out["changed"]) == ("Unisolate Pending", True)
    (post,) = vendor_server.calls("POST", UNISOLATE)
    assert post.json() == {"Comment": "soc-agent: false positive"}
    assert post.header("authorization") == f"Bearer {tokens.issued[0]}"


async def test_isolating_an_isolated_machine_sends_nothing(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens, history(("Isolate", "InProgress")))
    out = await make().invoke("isolate_host", {"target": FQDN})
    assert (out["state"], out["changed"]) == ("Isolate InProgress", False)
    assert vendor_server.calls("POST", ISOLATE) == []


async def test_action_already_in_progress_counts_as_done(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    vendor_server.route(
        "GET", ACTIONS, Reply(200, history()), Reply(200, history(("Isolate", "Pending")))
    )
    vendor_server.route("POST", ISOLATE, Reply(400, fx("error_400_in_progress")))
    out = await make().invoke("isolate_host", {"target": FQDN})
    assert (out["state"], out["changed"]) == ("Isolate Pending", False)
    assert len(vendor_server.calls("POST", ISOLATE)) == 1


async def test_a_400_that_did_not_isolate_is_reported(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    vendor_server.route("POST", ISOLATE, Reply(400, fx("error_400_in_progress")))
    with pytest.raises(ConnectorError, match="HTTP 400: ActiveRequestAlreadyExists Action is"):
        await make().invoke("isolate_host", {"target": FQDN})


@pytest.mark.parametrize(
    ("latest", "isolated"),
    [
        ((), False),  # isolated once in October, released since
        ((("Isolate", "Pending"),), True),
        ((("Isolate", "Succeeded"),), True),
        ((("Isolate", "Failed"),), False),
        ((("Isolate", "Cancelled"),), False),
        ((("Isolate", "Succeeded"), ("Unisolate", "InProgress")), False),
        ((("Isolate", "Succeeded"), ("Unisolate", "TimeOut")), True),
    ],
)
async def test_check_state_reads_the_latest_isolation_action(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    latest: tuple[tuple[str, str], ...],
    isolated: bool,
) -> None:
    serve_machine(vendor_server, tokens, history(*latest))
    conn = make()
    isolate = await conn.invoke("check_state", {"action": "isolate_host", "target": FQDN})
    release = await conn.invoke("check_state", {"action": "release_host", "target": FQDN})
    assert (isolate["in_effect"], release["in_effect"]) == (isolated, not isolated)
    assert isolate["vendor_id"] == MACHINE
    (request, _) = vendor_server.calls("GET", ACTIONS)
    assert request.query == {"$filter": [f"machineId eq '{MACHINE}'"]}


async def test_machine_actions_follow_the_next_link(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens)
    first = history()
    first["@odata.nextLink"] = (
        f"{vendor_server.url}/api/machineactions?$filter=machineId+eq+'{MACHINE}'&$skip=3"
    )
    second = history(("Isolate", "Succeeded"))
    second["value"] = second["value"][3:]

    def page(request: RecordedRequest) -> Reply:
        return Reply(200, second if request.query.get("$skip") == ["3"] else first)

    vendor_server.route("GET", ACTIONS, tokens.guard(page, Reply(401, fx("error_401"))))
    out = await make().invoke("check_state", {"action": "isolate_host", "target": FQDN})
    assert out["in_effect"] is True and out["state"] == "Isolate Succeeded"
    first_page, second_page = vendor_server.calls("GET", ACTIONS)
    assert "$skip" not in first_page.query
    assert second_page.query == {"$filter": [f"machineId eq '{MACHINE}'"], "$skip": ["3"]}
    assert second_page.header("authorization") == f"Bearer {tokens.issued[0]}"


# --- OData errors and limits ----------------------------------------------------------------


async def test_403_names_the_missing_permission_and_is_not_retried(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_machine(vendor_server, tokens)
    vendor_server.route("POST", ISOLATE, Reply(403, fx("error_403")))
    with pytest.raises(ConnectorError, match=r"HTTP 403: Forbidden .*\(Machine\.Isolate\)"):
        await make().invoke("isolate_host", {"target": FQDN})
    assert len(vendor_server.calls("POST", ISOLATE)) == 1 and fake_time.sleeps == []


async def test_404_carries_the_odata_error(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint
) -> None:
    serve_machine(vendor_server, tokens, history(("Isolate", "Succeeded")))
    vendor_server.route("POST", UNISOLATE, Reply(404, fx("error_404")))
    with pytest.raises(ConnectorError, match=f"HTTP 404: ResourceNotFound Machine {MACHINE}"):
        await make().invoke("release_host", {"target": FQDN})


async def test_429_on_a_lookup_waits_for_retry_after(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        MACHINES,
        Reply(429, fx("error_429"), headers={"Retry-After": "5"}),
        Reply(200, fx("machines")),
    )
    out = await make().invoke("get_host", {"host": FQDN})
    assert out["found"] is True and fake_time.sleeps == [5.0]


async def test_429_on_isolation_is_not_retried(
    make: Make, vendor_server: VendorServer, tokens: TokenEndpoint, fake_time: FakeTime
) -> None:
    serve_machine(vendor_server, tokens)
    vendor_server.route("POST", ISOLATE, Reply(429, fx("error_429"), headers={"Retry-After": "5"}))
    with pytest.raises(ConnectorError, match=r"HTTP 429: TooManyRequests .*not idempotent"):
        await make().invoke("isolate_host", {"target": FQDN})
    assert len(vendor_server.calls("POST", ISOLATE)) == 1 and fake_time.sleeps == []


async def test_503_is_retried_then_answers(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", MACHINES, Reply(503, fx("error_503")), Reply(200, fx("machines")))
    out = await make().invoke("get_host", {"host": FQDN})
    assert out["found"] is True and fake_time.sleeps == [0.5]


async def test_a_slow_defender_times_out(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", MACHINES, Reply(200, fx("machines"), delay=0.6))
    with pytest.raises(ConnectorError, match=r"GET /api/machines.*timed out after 0\.2s"):
        await make(timeout_seconds=0.2, max_retries=0).invoke("get_host", {"host": FQDN})


async def test_tokens_never_reach_logs_or_errors(
    make: Make,
    vendor_server: VendorServer,
    tokens: TokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    serve_machine(vendor_server, tokens)

    def echo(request: RecordedRequest) -> Reply:
        sent = request.header("authorization")
        return Reply(403, {"error": {"code": "Forbidden", "message": f"{sent} is not allowed"}})

    vendor_server.route("POST", ISOLATE, echo)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError) as err:
        await make().invoke("isolate_host", {"target": FQDN})
    assert "Bearer [REDACTED] is not allowed" in str(err.value)
    for value in (CLIENT_SECRET, *tokens.issued):
        assert value not in str(err.value) and value not in caplog.text
