"""Okta over real HTTP: the SSWS token, user lookup, suspend/unsuspend, clearing sessions,
verification, Okta's error bodies and its X-Rate-Limit-Reset header."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from soc_agent_packs.identity.connectors.okta import Okta, OktaConfig

from soc_agent.errors import ConnectorError
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "okta"
API_TOKEN = "00Qw3rTy9uIoP4aSdFgH2jKlZx7cVbNm5Lk0JhGf8D"
LOGIN = "m.chen@example.com"
USER_ID = "00u1f96ECLNVOKVMUSEA"
BY_LOGIN = f"/api/v1/users/{LOGIN}"
BY_ID = f"/api/v1/users/{USER_ID}"
SUSPEND = f"{BY_ID}/lifecycle/suspend"
UNSUSPEND = f"{BY_ID}/lifecycle/unsuspend"
SESSIONS = f"{BY_ID}/sessions"
Make = Callable[..., Okta]


def fx(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def user(status: str = "ACTIVE") -> dict[str, Any]:
    body = fx("user")
    body["status"] = status
    return body  # type: ignore[no-any-return]


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("OKTA_API_TOKEN", API_TOKEN)
    built: list[Okta] = []

    def build(**config: Any) -> Okta:
        config.setdefault("base_url", vendor_server.url)
        config.setdefault("credentials", "env:OKTA_API_TOKEN")
        conn = Okta(OktaConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def ssws(expected: Callable[[], str], ok: Reply) -> Callable[[RecordedRequest], Reply]:
    """Okta's auth check: E0000011 unless `Authorization: SSWS <token>` is right."""

    def answer(request: RecordedRequest) -> Reply:
        if request.header("authorization") != f"SSWS {expected()}":
            return Reply(401, fx("error_401"))
        return ok

    return answer


# --- the API token --------------------------------------------------------------------------


async def test_the_api_token_is_sent_as_ssws(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", BY_LOGIN, ssws(lambda: API_TOKEN, Reply(200, user())))
    out = await make().invoke("get_user", {"user": LOGIN})
    assert out["found"] is True
    (request,) = vendor_server.requests
    assert request.header("authorization") == f"SSWS {API_TOKEN}"
    assert request.header("accept") == "application/json"


async def test_a_rotated_token_file_is_reread_once_on_401(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    old, new = (
        "00OldOldOldOldOldOldOldOldOldOldOldOldOld1",
        "00NewNewNewNewNewNewNewNewNewNewNewNew2",
    )
    secret = tmp_path / "okta_token"
    secret.write_text(old + "\n", encoding="utf-8")

    def okta(request: RecordedRequest) -> Reply:
        if request.header("authorization") == f"SSWS {new}":
            return Reply(200, user())
        secret.write_text(new + "\n", encoding="utf-8")  # rotated while Okta refused the old
        return Reply(401, fx("error_401"))

    vendor_server.route("GET", BY_LOGIN, okta)
    out = await make(credentials=f"file:{secret}").invoke("get_user", {"user": LOGIN})
    assert out["found"] is True
    assert [r.header("authorization") for r in vendor_server.requests] == [
        f"SSWS {old}",
        f"SSWS {new}",
    ]


async def test_a_401_with_an_unchanged_token_fails_once(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(401, fx("error_401")))
    with pytest.raises(ConnectorError, match=r"HTTP 401: Invalid token provided"):
        await make().invoke("get_user", {"user": LOGIN})
    assert len(vendor_server.requests) == 1


# --- users ----------------------------------------------------------------------------------


async def test_get_user_maps_okta_fields(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user()))
    out = await make().invoke("get_user", {"user": LOGIN})
    assert out == {
        "user": LOGIN,
        "found": True,
        "id": USER_ID,
        "status": "ACTIVE",
        "login": LOGIN,
        "email": LOGIN,
        "department": "Finance",
        "display_name": "Megan Chen",
        "last_login": "2026-11-20T08:47:13.000Z",
        "status_changed": "2024-02-05T09:31:52.000Z",
    }


async def test_an_unknown_user_is_not_found_without_retries(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", "/api/v1/users/j.doe@example.com", Reply(404, fx("error_404")))
    out = await make().invoke("get_user", {"user": "j.doe@example.com"})
    assert out == {"user": "j.doe@example.com", "found": False} | {
        k: None
        for k in (
            "id",
            "status",
            "login",
            "email",
            "department",
            "display_name",
            "last_login",
            "status_changed",
        )
    }
    assert len(vendor_server.requests) == 1 and fake_time.sleeps == []


async def test_a_login_cannot_change_the_path(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", "/api/v1/users/a%2F..%2F..%2Fgroups", Reply(404, fx("error_404")))
    out = await make().invoke("get_user", {"user": "a/../../groups"})
    assert out["found"] is False
    (request,) = vendor_server.requests
    assert request.path == "/api/v1/users/a%2F..%2F..%2Fgroups"


# --- account containment --------------------------------------------------------------------


async def test_disable_user_suspends_by_okta_id(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user()))
    vendor_server.route("POST", SUSPEND, Reply(200, {}))
    out = await make().invoke("disable_user", {"target": LOGIN, "reason": "impossible travel"})
    assert out == {
        "action": "disable_user",
        "target": LOGIN,
        "vendor_id": USER_ID,
        "state": "SUSPENDED",
        "changed": True,
        "request_id": None,
    }
    (post,) = vendor_server.calls("POST", SUSPEND)
    assert post.body == b"" and post.query == {}
    assert post.header("authorization") == f"SSWS {API_TOKEN}"


@pytest.mark.parametrize("status", ["SUSPENDED", "DEPROVISIONED"])
async def test_disabling_a_disabled_user_sends_nothing(
    make: Make, vendor_server: VendorServer, status: str
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user(status)))
    out = await make().invoke("disable_user", {"target": LOGIN})
    assert (out["state"], out["changed"]) == (status, False)
    assert vendor_server.calls("POST") == []


async def test_enable_user_unsuspends(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user("SUSPENDED")))
    vendor_server.route("POST", UNSUSPEND, Reply(200, {}))
    out = await make().invoke("enable_user", {"target": LOGIN})
    assert (out["state"], out["changed"]) == ("ACTIVE", True)
    (post,) = vendor_server.calls("POST", UNSUSPEND)
    assert post.header("authorization") == f"SSWS {API_TOKEN}"


async def test_enable_user_will_not_reactivate_a_deactivated_user(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user("DEPROVISIONED")))
    with pytest.raises(ConnectorError, match="deactivated"):
        await make().invoke("enable_user", {"target": LOGIN})
    assert vendor_server.calls("POST") == []


async def test_revoke_sessions_clears_sessions_and_oauth_tokens(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user()))
    vendor_server.route("DELETE", SESSIONS, Reply(204))
    out = await make().invoke("revoke_sessions", {"target": LOGIN})
    assert (out["vendor_id"], out["changed"]) == (USER_ID, True)
    (delete,) = vendor_server.calls("DELETE", SESSIONS)
    assert delete.query == {"oauthTokens": ["true"]}
    assert delete.header("authorization") == f"SSWS {API_TOKEN}"
    assert Okta.capabilities()["revoke_sessions"].reversible is False


@pytest.mark.parametrize(
    ("action", "status", "in_effect"),
    [
        ("disable_user", "SUSPENDED", True),
        ("disable_user", "DEPROVISIONED", True),
        ("disable_user", "ACTIVE", False),
        ("disable_user", "LOCKED_OUT", False),
        ("enable_user", "ACTIVE", True),
        ("enable_user", "SUSPENDED", False),
    ],
)
async def test_check_state_reads_the_user_status(
    make: Make, vendor_server: VendorServer, action: str, status: str, in_effect: bool
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user(status)))
    out = await make().invoke("check_state", {"action": action, "target": LOGIN})
    assert out == {
        "action": action,
        "target": LOGIN,
        "in_effect": in_effect,
        "state": status,
        "vendor_id": USER_ID,
    }


# --- Okta's errors and limits ---------------------------------------------------------------


async def test_a_refused_suspend_reports_oktas_summary(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user("LOCKED_OUT")))
    vendor_server.route("POST", SUSPEND, Reply(400, fx("error_400_not_active")))
    with pytest.raises(ConnectorError, match="HTTP 400: Api validation failed: suspend"):
        await make().invoke("disable_user", {"target": LOGIN})


async def test_403_is_reported_and_not_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user()))
    vendor_server.route("DELETE", SESSIONS, Reply(403, fx("error_403")))
    with pytest.raises(ConnectorError, match="HTTP 403: You do not have permission"):
        await make().invoke("revoke_sessions", {"target": LOGIN})
    assert len(vendor_server.calls("DELETE")) == 1 and fake_time.sleeps == []


def _rate_limited(fake_time: FakeTime, seconds: int) -> Reply:
    reset = int(fake_time.now().timestamp()) + seconds
    headers = {
        "X-Rate-Limit-Limit": "600",
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Reset": str(reset),
    }
    return Reply(429, fx("error_429"), headers=headers)


async def test_429_waits_until_x_rate_limit_reset(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", BY_LOGIN, _rate_limited(fake_time, 12), Reply(200, user()))
    out = await make().invoke("get_user", {"user": LOGIN})
    assert out["found"] is True and fake_time.sleeps == [12.0]


async def test_429_on_a_lifecycle_operation_is_not_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user()))
    vendor_server.route("POST", SUSPEND, _rate_limited(fake_time, 4), Reply(200, {}))
    with pytest.raises(
        ConnectorError, match=r"HTTP 429: API call exceeded rate limit.*not idempotent"
    ):
        await make().invoke("disable_user", {"target": LOGIN})
    assert len(vendor_server.calls("POST", SUSPEND)) == 1 and fake_time.sleeps == []


async def test_429_on_clearing_sessions_is_retried_after_the_reset(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user()))
    vendor_server.route("DELETE", SESSIONS, _rate_limited(fake_time, 4), Reply(204))
    await make().invoke("revoke_sessions", {"target": LOGIN})
    assert len(vendor_server.calls("DELETE", SESSIONS)) == 2 and fake_time.sleeps == [4.0]


async def test_500_is_retried_with_backoff(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        BY_LOGIN,
        Reply(500, fx("error_500")),
        Reply(500, fx("error_500")),
        Reply(200, user()),
    )
    out = await make().invoke("get_user", {"user": LOGIN})
    assert out["found"] is True and fake_time.sleeps == [0.5, 1.0]


async def test_a_slow_okta_times_out(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", BY_LOGIN, Reply(200, user(), delay=0.6))
    with pytest.raises(ConnectorError, match=r"timed out after 0\.2s"):
        await make(timeout_seconds=0.2, max_retries=0).invoke("get_user", {"user": LOGIN})


async def test_the_api_token_never_reaches_errors_or_logs(
    make: Make, vendor_server: VendorServer, caplog: pytest.LogCaptureFixture
) -> None:
    def echo(request: RecordedRequest) -> Reply:
        body = fx("error_403")
        body["errorSummary"] = f"{request.header('authorization')} may not read users"
        return Reply(403, body)

    vendor_server.route("GET", BY_LOGIN, echo)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError) as err:
        await make().invoke("get_user", {"user": LOGIN})
    assert "SSWS [REDACTED] may not read users" in str(err.value)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert API_TOKEN not in str(err.value) and API_TOKEN not in caplog.text
