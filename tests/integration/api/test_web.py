"""The web UI over real HTTP (no browser): login, cookies, CSRF, CSP, role-gated forms.

The browser tests (tests/e2e/browser) drive the same pages in Chromium; these
check the security properties a browser does not show: cookie flags, the CSP
header, refused forged posts, audit of logins.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from soc_agent.api.credentials import revoke_token
from soc_agent.ingest import normalize
from tests.integration.api.conftest import (
    ALERT,
    BEACON,
    Api,
    open_api,
    running_server,
    seed_tokens,
)
from tests.integration.conftest import ALERTS, Deployment

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "alerts"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def _login(
    api: Api, client: httpx.AsyncClient, who: str, *, username: str = ""
) -> httpx.Response:
    form = await client.get(api.url + "/login")
    return await client.post(
        api.url + "/login",
        data={"token": api.tokens[who], "username": username, "csrf": _csrf(form.text)},
    )


@pytest.fixture
async def browser_like(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        yield client


async def test_login_opens_a_strict_httponly_session_and_is_audited(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    r = await _login(api, browser_like, "alice", username="alice")
    assert r.status_code == 303
    assert r.headers["location"] == "/proposals"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("soc_session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain http on loopback, cookie_secure unset
    page = await browser_like.get(api.url + "/proposals")
    assert page.status_code == 200
    assert 'id="whoami">alice<' in page.text
    logins = await api.audit(action="api.login")
    assert [(e["actor"], e["outcome"]) for e in logins] == [("token:alice", "ok")]
    assert api.tokens["alice"] not in str(logins)


async def test_bad_logins_are_refused_and_audited(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    form = await browser_like.get(api.url + "/login")
    csrf = _csrf(form.text)
    wrong = await browser_like.post(
        api.url + "/login", data={"token": "soc_guess", "username": "mallory", "csrf": csrf}
    )
    assert wrong.status_code == 401
    assert "unknown or revoked token" in wrong.text
    assert "soc_session" not in wrong.headers.get("set-cookie", "")
    csrf = _csrf(wrong.text)
    mismatch = await browser_like.post(
        api.url + "/login", data={"token": api.tokens["vic"], "username": "ada", "csrf": csrf}
    )
    assert mismatch.status_code == 401
    assert "does not belong" in mismatch.text
    no_csrf = await browser_like.post(api.url + "/login", data={"token": api.tokens["vic"]})
    assert no_csrf.status_code == 403
    async with httpx.AsyncClient(timeout=10) as fresh:  # no login-CSRF cookie at all
        forged = await fresh.post(
            api.url + "/login", data={"token": api.tokens["vic"], "csrf": csrf}
        )
        assert forged.status_code == 403
    logins = await api.audit(action="api.login")
    # Nobody writes an audit entry in another's name: a failed login is
    # `unauthenticated`, with the claimed name as a detail; one burst, one entry.
    assert [(e["actor"], e["outcome"]) for e in logins] == [("unauthenticated", "denied")]
    assert logins[0]["details"]["claimed_username"] == "mallory"


async def test_a_login_flood_is_throttled_and_audited_once(api: Api) -> None:
    """Failed logins once answered at 364/s, each a permanent entry with the attacker's actor."""
    limit = api.settings.api.login_max_failures
    async with httpx.AsyncClient(timeout=10) as client:
        form = await client.get(api.url + "/login")
        csrf = _csrf(form.text)
        codes = []
        for i in range(limit + 5):
            r = await client.post(
                api.url + "/login",
                data={"token": f"soc_guess{i}", "username": "A" * 120, "csrf": csrf},
            )
            codes.append(r.status_code)
            csrf = _csrf(r.text)
        assert codes[:limit] == [401] * limit and codes[limit:] == [429] * 5
        assert int(r.headers["retry-after"]) > 0
        # even the right token waits: the throttle is not an oracle
        r = await client.post(api.url + "/login", data={"token": api.tokens["alice"], "csrf": csrf})
        assert r.status_code == 429
    logins = await api.audit(action="api.login")
    assert [e["outcome"] for e in logins] == ["throttled", "denied"]
    assert {e["actor"] for e in logins} == {"unauthenticated"}
    assert all(len(e["details"]["claimed_username"]) <= 64 for e in logins)
    assert f"{limit} failed logins" in logins[0]["reason"]
    api.deployment.clock.advance(seconds=api.settings.api.login_window_seconds + 1)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await _login(api, client, "alice", username="alice")).status_code == 303


async def test_session_cookie_is_secure_behind_an_https_proxy(api: Api) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        form = await client.get(api.url + "/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in form.headers["set-cookie"].lower()
        # httpx keeps a Secure cookie away from plain http; a TLS proxy would pass it on.
        client.cookies.set("soc_login_csrf", _csrf(form.text))
        r = await client.post(
            api.url + "/login",
            headers={"X-Forwarded-Proto": "https"},
            data={"token": api.tokens["vic"], "csrf": _csrf(form.text)},
        )
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()


async def test_cookie_secure_setting_forces_the_flag(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.conftest import Clock

    deployment = Deployment(tmp_path_factory.mktemp("secure"), Clock())
    settings, tokens = await open_api(deployment, api={"cookie_secure": True})
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            form = await client.get(url + "/login")
            assert "secure" in form.headers["set-cookie"].lower()
            csrf = _csrf(form.text)
            client.cookies.set("soc_login_csrf", csrf)
            r = await client.post(url + "/login", data={"token": tokens["vic"], "csrf": csrf})
            assert "secure" in r.headers["set-cookie"].lower()


async def test_every_page_has_a_strict_csp_no_script_and_the_kill_switch(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    await _login(api, browser_like, "vic")
    proposal = await api.proposal("isolate_host")
    pages = [
        "/proposals",
        "/proposals?status=all",
        f"/proposals/{proposal.id}",
        "/incidents",
        f"/incidents/{proposal.incident_id}",
        "/actions",
        "/audit",
        f"/audit?subject={proposal.id}",
        "/controls",
    ]
    for path in pages:
        r = await browser_like.get(api.url + path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, csp
        assert "frame-ancestors 'none'" in csp
        assert "<script" not in r.text.lower() and " style=" not in r.text
        assert 'id="kill-switch"' in r.text, path
        assert "Kill switch off" in r.text
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        if path.startswith("/audit"):
            assert "Chain intact" in r.text and "new entries checked now" in r.text
    login = await browser_like.get(api.url + "/login")
    assert "<script" not in login.text.lower()
    css = await browser_like.get(api.url + "/static/style.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


async def test_pages_need_a_session(api: Api) -> None:
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as anonymous:
        for path in ("/", "/proposals", "/audit", "/controls"):
            r = await anonymous.get(api.url + path)
            assert r.status_code == 303
            assert r.headers["location"] in ("/login", "/proposals")
        proposal = await api.proposal("quarantine_file")
        post = await anonymous.post(api.url + f"/proposals/{proposal.id}/approve", data={})
        assert post.status_code == 401
        anonymous.cookies.set("soc_session", "made-up-session-id")
        assert (await anonymous.get(api.url + "/proposals")).status_code == 303
    assert api.deployment.journal() == []


async def test_approving_in_the_ui_needs_the_session_csrf_token(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    await _login(api, browser_like, "alice")
    proposal = await api.proposal("quarantine_file")
    page = await browser_like.get(api.url + f"/proposals/{proposal.id}")
    assert 'id="approve"' in page.text
    csrf = _csrf(page.text)
    url = api.url + f"/proposals/{proposal.id}/approve"
    assert (await browser_like.post(url, data={"comment": "x"})).status_code == 403
    wrong = await browser_like.post(url, data={"comment": "x", "csrf": csrf[:-2] + "zz"})
    assert wrong.status_code == 403
    assert "CSRF" in wrong.text
    assert api.deployment.journal() == []
    ok = await browser_like.post(url, data={"comment": "beacon", "csrf": csrf})
    assert ok.status_code == 303
    after = await browser_like.get(api.url + ok.headers["location"])
    assert "executed" in after.text and 'id="flash"' in after.text
    assert api.deployment.journal_actions() == [("quarantine_file", BEACON)]
    # The approval is kept as a label on the action, shown on the incident page and API.
    incident = await browser_like.get(api.url + f"/incidents/{proposal.incident_id}")
    assert 'id="action-labels"' in incident.text and "approved" in incident.text
    detail = (await api.get(f"/api/v1/incidents/{proposal.incident_id}")).json()
    assert [(x["action"], x["judgement"], x["analyst"], x["comment"]) for x in detail[
        "action_labels"
    ]] == [("quarantine_file", "approved", "token:alice", "beacon")]  # fmt: skip
    again = await browser_like.post(url, data={"csrf": csrf})
    shown = await browser_like.get(api.url + again.headers["location"])
    assert "Not done" in shown.text and "not pending" in shown.text
    assert api.deployment.journal_actions() == [("quarantine_file", BEACON)]


async def test_viewer_sees_no_decision_buttons_and_a_forged_post_is_refused(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    await _login(api, browser_like, "vic")
    proposal = await api.proposal("quarantine_file")
    page = await browser_like.get(api.url + f"/proposals/{proposal.id}")
    assert 'id="approve"' not in page.text and 'id="reject"' not in page.text
    assert "needs the <strong>analyst</strong> role" in page.text
    csrf = _csrf(page.text)  # the viewer's own valid token, from the logout form
    for verb in ("approve", "reject"):
        r = await browser_like.post(
            api.url + f"/proposals/{proposal.id}/{verb}", data={"csrf": csrf}
        )
        assert r.status_code == 403
        assert "needs the analyst role" in r.text
    assert (await api.proposal("quarantine_file")).status.value == "pending"
    assert api.deployment.journal() == []


async def test_revoking_the_token_or_logging_out_ends_the_session(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    await _login(api, browser_like, "sam")
    page = await browser_like.get(api.url + "/proposals")
    assert page.status_code == 200
    await revoke_token(api.settings, "sam", actor="ops")
    assert (await browser_like.get(api.url + "/proposals")).status_code == 303

    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as other:
        await _login(api, other, "sue")
        page = await other.get(api.url + "/proposals")
        out = await other.post(api.url + "/logout", data={"csrf": _csrf(page.text)})
        assert out.status_code == 303
        assert (await other.get(api.url + "/proposals")).status_code == 303


async def test_kill_switch_from_the_ui_shows_on_every_page(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    await _login(api, browser_like, "alice")
    controls = await browser_like.get(api.url + "/controls")
    assert 'id="kill-on"' in controls.text
    r = await browser_like.post(
        api.url + "/kill-switch", data={"state": "on", "csrf": _csrf(controls.text)}
    )
    assert r.status_code == 303
    for path in ("/proposals", "/incidents", "/audit"):
        assert "KILL SWITCH ON" in (await browser_like.get(api.url + path)).text
    controls = await browser_like.get(api.url + "/controls")
    assert 'id="kill-off"' not in controls.text  # releasing needs a senior
    refused = await browser_like.post(
        api.url + "/kill-switch", data={"state": "off", "csrf": _csrf(controls.text)}
    )
    assert refused.status_code == 403
    assert (await api.get("/api/v1/kill-switch")).json()["active"] is True
    (event,) = await api.audit(action="control.kill_switch")
    assert (event["actor"], event["outcome"]) == ("token:alice", "on")


async def test_bidi_controls_in_alert_content_are_shown_not_obeyed(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    doc = json.loads((SAMPLES / "crowdstrike_malware.json").read_text())
    # "invoice_2026\u202eexe.pdf" displays as "invoice_2026fdp.exe" once reversed
    doc["event"]["Name"] = "Known Malware in invoice_2026\u202efdp.exe"
    doc["event"]["Hostname"] = "WS-FIN-042\u2067\u200f"
    doc["event"]["CompositeId"] += "-bidi"
    async with api.deployment.open(api.settings) as c:
        outcome = await c.agent.handle(normalize(doc))
    await _login(api, browser_like, "vic")
    for path in (f"/incidents/{outcome.decision.incident_id}", "/incidents", "/audit"):
        page = await browser_like.get(api.url + path)
        assert page.status_code == 200, path
        for ch in ("\u202e", "\u2067", "\u200f"):
            assert ch not in page.text, (path, hex(ord(ch)))
    page = await browser_like.get(api.url + f"/incidents/{outcome.decision.incident_id}")
    assert "invoice_2026[U+202E]fdp.exe" in page.text
    css = (await browser_like.get(api.url + "/static/style.css")).text
    assert "unicode-bidi: isolate" in css


class _Page(HTMLParser):
    """A page as a tree of (tag, children), each child a text or an element."""

    _VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root: tuple[str, list[object]] = ("#document", [])
        self._open = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element: tuple[str, list[object]] = (tag, [])
        self._open[-1][1].append(element)
        if tag not in self._VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while len(self._open) > 1 and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        self._open[-1][1].append(data)

    def unisolated(self, isolating: frozenset[str]) -> list[str]:
        """Right-to-left text that is not the only content of an isolating element."""
        out: list[str] = []

        def walk(tag: str, children: list[object]) -> None:
            content = [c for c in children if not isinstance(c, str) or c.strip()]
            for child in children:
                if isinstance(child, tuple):
                    walk(*child)
                # The document title holds no markup, and the browser lays it out alone.
                elif (
                    tag != "title"
                    and any(_rtl(ch) for ch in child)
                    and (tag not in isolating or len(content) != 1)
                ):
                    out.append(f"<{tag}> {content!r}")

        walk(*self.root)
        return out


def _rtl(ch: str) -> bool:
    return unicodedata.bidirectional(ch) in ("R", "AL")


# A block element is a bidi paragraph of its own: its only content reorders nothing else.
_BLOCKS = frozenset({"h1", "h2", "h3", "p", "pre", "td", "th", "dd", "dt", "li"})


async def test_right_to_left_values_cannot_reorder_the_text_around_them(
    deployment: Deployment,
) -> None:
    doc = json.loads((ALERTS / ALERT).read_text())
    # Unisolated, a Hebrew value and the page's words after it swap places on screen:
    # "<title> · rule X" reads "rule X · <title>" once the neutral " · " joins the RTL run.
    title = "\u05e9\u05dc\u05d5\u05dd 2026"
    doc["event"]["Name"] = title
    doc["event"]["Description"] = "\u05ea\u05d9\u05d0\u05d5\u05e8 1"
    doc["event"]["FileName"] = "\u05e7\u05d5\u05d1\u05e5.exe"
    doc["event"]["UserName"] = "\u05d3\u05e0\u05d9"
    settings = deployment.settings("endpoint-malware", policy={"agent_autonomy": 2})
    async with deployment.open(settings) as c:
        outcome = await c.agent.handle(normalize(doc))
    incident = outcome.decision.incident_id
    tokens = await seed_tokens(settings)
    with running_server(settings, deployment.clock) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            form = await client.get(url + "/login")
            await client.post(
                url + "/login", data={"token": tokens["ada"], "csrf": _csrf(form.text)}
            )
            css = (await client.get(url + "/static/style.css")).text
            (rule,) = re.findall(r"([^{}]+)\{\s*unicode-bidi: isolate;\s*\}", css)
            isolating = _BLOCKS | {"bdi", *(s.split()[-1] for s in rule.split(",") if s.strip())}
            bearer = {"Authorization": f"Bearer {tokens['ada']}"}
            listed = await client.get(url + "/api/v1/proposals", headers=bearer)
            proposals = [p["id"] for p in listed.json()["items"]]
            assert proposals, "the malicious hash should have led to proposals"
            for proposal in proposals:  # approved with a comment in Hebrew
                approved = await client.post(
                    f"{url}/api/v1/proposals/{proposal}/approve",
                    headers=bearer,
                    json={"comment": "\u05d1\u05e1\u05d3\u05e8 2"},
                )
                assert approved.status_code == 200, approved.text
            details = [f"/incidents/{incident}", *(f"/proposals/{p}" for p in proposals)]
            missing = "/incidents/\u05d0\u05d9\u05df"
            unisolated: list[str] = []
            for path in ["/proposals", "/incidents", "/audit", "/actions", *details, missing]:
                page = await client.get(url + path)
                assert page.status_code == (404 if path == missing else 200), path
                assert path not in details or title in page.text, path
                unisolated += [f"{path}: {t}" for t in _Page(page.text).unisolated(isolating)]
    assert unisolated == []


async def test_the_incident_page_shows_every_name_an_entity_goes_by(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    doc = json.loads((SAMPLES / "ms_graph_impossible_travel.json").read_text())
    async with api.deployment.open(api.settings) as c:
        outcome = await c.agent.handle(normalize(doc))
    await _login(api, browser_like, "vic")
    page = await browser_like.get(api.url + f"/incidents/{outcome.decision.incident_id}")
    assert page.status_code == 200
    assert "user: <code>m.chen@acme.example</code>" in page.text
    assert "sam <code>m.chen</code>" in page.text


async def test_closing_an_incident_in_the_ui_needs_the_csrf_token_and_the_analyst_role(
    api: Api, browser_like: httpx.AsyncClient
) -> None:
    incident_id = (await api.get("/api/v1/incidents")).json()["items"][0]["id"]
    url = api.url + f"/incidents/{incident_id}/close"
    await _login(api, browser_like, "vic")
    page = await browser_like.get(api.url + f"/incidents/{incident_id}")
    assert 'id="close-form"' not in page.text and "Open: no analyst" in page.text
    forged = {"verdict": "false_positive", "reason": "x", "csrf": _csrf(page.text)}
    assert (await browser_like.post(url, data=forged)).status_code == 403

    browser_like.cookies.clear()
    await _login(api, browser_like, "alice")
    page = await browser_like.get(api.url + f"/incidents/{incident_id}")
    assert 'id="close-form"' in page.text
    form = {"verdict": "benign_true_positive", "reason": "<b>patch</b> window"}
    assert (await browser_like.post(url, data=form)).status_code == 403  # no CSRF token
    done = await browser_like.post(url, data={**form, "csrf": _csrf(page.text)})
    assert done.status_code == 303
    after = await browser_like.get(api.url + done.headers["location"])
    assert "Closed as benign_true_positive" in after.text
    assert "verdict-benign_true_positive" in after.text and "token:alice" in after.text
    assert "&lt;b&gt;patch&lt;/b&gt; window" in after.text  # the reason is text, not markup
