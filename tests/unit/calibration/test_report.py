"""Calibration rendering: the text table, stable JSON, and one self-contained HTML page
that escapes every attacker-influenced name and reaches for nothing outside itself."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from soc_agent.calibration.model import ActionOutcome, CalibrationReport, Verdict
from soc_agent.calibration.report import as_html, as_json, as_text, describe, first_reaching
from soc_agent.calibration.stats import MISSING_EXTRA, build_report, figures, precision

TP, FP = Verdict.TRUE_POSITIVE, Verdict.FALSE_POSITIVE
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_PLAYBOOK = 'edr"><script>alert(2)</script>'
USER = "user:m.chen@acme.example"
THRESHOLDS = range(50, 101, 5)


def outcome(
    alert_id: str,
    *,
    playbook: str = "identity-compromise",
    action: str = "disable_user",
    target: str = USER,
    disposition: str = "executed",
    verdict: Verdict | None = TP,
    score: float = 92.0,
) -> ActionOutcome:
    # The pure policy re-run at each execute_at: executed once the score reaches it.
    sweep = {t: "executed" if score >= t else "proposed" for t in THRESHOLDS}
    return ActionOutcome(
        alert_id=alert_id,
        incident_id=f"inc-{alert_id}",
        playbook=playbook,
        action=action,
        target=target,
        score=score,
        disposition=disposition,
        rule="threshold.execute",
        verdict=verdict,
        at_threshold=sweep,
    )


def _current() -> list[ActionOutcome]:
    """38 of 40 executed disables were true positives; 3 low-score proposals, unlabelled."""
    executed = [
        outcome(f"okta-{i:03d}", score=85 + i % 15, verdict=FP if i in (0, 1) else TP)
        for i in range(40)
    ]
    proposed = [
        outcome(f"okta-p{i}", score=62.0, disposition="proposed", verdict=None) for i in range(3)
    ]
    hostile = outcome(
        "cs-<b>9</b>",
        playbook=HOSTILE_PLAYBOOK,
        action="isolate_host",
        target=HOSTILE,
        disposition="proposed",
        verdict=FP,
        score=71.0,
    )
    return [*executed, *proposed, hostile]


def _candidate() -> list[ActionOutcome]:
    moved = {"okta-p0": "executed", "cs-<b>9</b>": "executed"}
    return [
        ActionOutcome(**{**o.__dict__, "disposition": moved.get(o.alert_id, o.disposition)})
        for o in _current()
        if o.alert_id != "okta-p2"  # the candidate no longer puts this one forward
    ]


@pytest.fixture(scope="module")
def report() -> CalibrationReport:
    return build_report(_current(), _candidate(), alerts=60)


@pytest.fixture(scope="module")
def page(report: CalibrationReport) -> str:
    return as_html(report)


# -- text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "wrong", "unlabelled", "confidence", "text"),
    [
        (38, 2, 0, 0.95, "0.95 (38/40, 95% CI 0.83-0.99)"),
        (38, 2, 5, 0.95, "0.95 (38/40, 95% CI 0.83-0.99; 5 unlabelled)"),
        (38, 2, 0, 0.90, "0.95 (38/40, 90% CI 0.86-0.98)"),
        (5, 5, 0, 0.95, "0.50 (5/10, 95% CI 0.24-0.76)"),
        (0, 0, 0, 0.95, "no labelled cases"),
        (0, 0, 3, 0.95, "no labelled cases (3 unlabelled)"),
    ],
)
def test_describe_a_precision(
    correct: int, wrong: int, unlabelled: int, confidence: float, text: str
) -> None:
    verdicts = [TP] * correct + [FP] * wrong
    p = precision(
        [outcome(f"a{i}", verdict=v) for i, v in enumerate(verdicts)], confidence=confidence
    )
    assert describe(p, confidence, total=correct + wrong + unlabelled) == text


def test_text_shows_figures_per_action_the_sweep_and_the_changes(report: CalibrationReport) -> None:
    text = as_text(report)
    assert text.startswith("Calibration: 60 alerts replayed, 41 labelled")
    assert "executions: 0.95 (38/40, 95% CI 0.83-0.99)" in text
    assert "proposals:  no labelled cases (3 unlabelled)" in text
    assert "executed 40  proposed 3  notified 0  escalated 0  other 0" in text
    assert "== Candidate configuration ==" in text
    current = text[: text.index("== Candidate configuration ==")]
    identity = current[current.index("identity-compromise / disable_user") :]
    # Every executed disable scored 85 or more; the two false positives scored 85 and 86.
    assert "sweep: precision first reaches 0.98 at execute_at 90" in identity
    rows = {
        line.split()[0]: " ".join(line.split()[1:])
        for line in identity.splitlines()
        if line.startswith("    ")
    }
    assert rows["60"] == "43 0.95 (38/40, 95% CI 0.83-0.99; 3 unlabelled)"
    assert rows["85"] == "40 0.95 (38/40, 95% CI 0.83-0.99)"
    assert rows["90"] == "25 1.00 (25/25, 95% CI 0.87-1.00)"
    assert rows["100"] == "0 no labelled cases"
    hostile = current[: current.index("identity-compromise / disable_user")]
    assert "sweep: precision never reaches 0.98" in hostile
    assert "== Changes (current -> candidate): 3 ==" in text
    change_lines = [line for line in text.splitlines() if line.startswith("okta-p")]
    assert change_lines[0].split()[-3:] == ["proposed", "executed", "-"]
    assert change_lines[1].split()[-3:] == ["proposed", "absent", "-"]


def test_text_shows_control_characters_instead_of_sending_them_to_the_terminal() -> None:
    report = build_report([outcome("a\x1b[2J", target="user:\x1b]0;pwned\x07x")], alerts=1)
    text = as_text(report)
    assert "\x1b" not in text and "\x07" not in text
    assert "user:\\x1b]0;pwned\\x07x" not in text  # targets only appear in the changes
    report = build_report([], [outcome("a\x1b[2J", target="user:\x1b]0;pwned\x07x")], alerts=1)
    text = as_text(report)
    assert "\x1b" not in text and "a\\x1b[2J" in text and "user:\\x1b]0;pwned\\x07x" in text


def test_first_reaching_is_the_lowest_threshold_at_the_target() -> None:
    outcomes = [outcome(f"a{i}", score=60 + i, verdict=TP if i >= 20 else FP) for i in range(40)]
    (fig,) = figures(outcomes)
    assert first_reaching(fig.sweep) == 80  # 60..79 are the false positives
    assert first_reaching(fig.sweep, 0.6) == 70  # 20/30
    assert first_reaching(fig.sweep, 1.01) is None
    assert first_reaching(()) is None


# -- JSON -------------------------------------------------------------------------------


def test_json_round_trips_with_stable_keys(report: CalibrationReport) -> None:
    data = as_json(report)
    assert json.loads(json.dumps(data)) == data
    assert list(data) == ["alerts", "labelled", "confidence", "current", "candidate", "changes"]
    identity = next(f for f in data["current"] if f["action"] == "disable_user")
    assert list(identity) == [
        "playbook", "action", "counts", "executions", "proposals", "sweep", "judged",
    ]  # fmt: skip
    assert identity["counts"] == {
        "executed": 40, "proposed": 3, "notified": 0, "escalated": 0, "other": 0,
    }  # fmt: skip
    assert identity["executions"]["correct"] == 38
    assert identity["executions"]["low"] == pytest.approx(0.8350, abs=5e-5)
    assert identity["proposals"] == {
        "correct": 0, "labelled": 0, "value": None, "low": None, "high": None,
    }  # fmt: skip
    assert [p["threshold"] for p in identity["sweep"]] == list(THRESHOLDS)
    assert data["changes"][0] == {
        "alert_id": "cs-<b>9</b>",
        "playbook": HOSTILE_PLAYBOOK,
        "action": "isolate_host",
        "target": HOSTILE,
        "current": "proposed",
        "candidate": "executed",
        "verdict": "false_positive",
    }


def test_json_without_candidate_says_null() -> None:
    data = as_json(build_report([outcome("a")], alerts=1))
    assert data["candidate"] is None and data["changes"] == []
    assert json.loads(json.dumps(data)) == data


# -- HTML -------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Every start tag with its (unescaped) attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def test_html_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "<iframe", "url(", "//cdn"):
        assert forbidden not in lowered, forbidden
    tags = _parse(page).tags
    names = {t for t, _ in tags}
    assert "style" in names and not names & {"script", "link", "iframe", "object", "embed"}
    for tag, attrs in tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for key in ("src", "href"):
            link = attrs.get(key)
            assert link is None or link.startswith("data:image/png;base64,"), (tag, key)
    csp = next(a["content"] for t, a in tags if a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp


def test_html_escapes_every_name_from_the_data(page: str) -> None:
    assert HOSTILE not in page and "<script>alert(2)" not in page and "<b>9</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert HOSTILE in text and "cs-<b>9</b>" in text  # shown as text, exactly
    assert [a for t, a in parsed.tags if t == "img"] and all(
        a["src"] is not None and a["src"].startswith("data:") for t, a in parsed.tags if t == "img"
    )
    sections = [a for t, a in parsed.tags if t == "section" and "data-playbook" in a]
    assert HOSTILE_PLAYBOOK in {a["data-playbook"] for a in sections}  # quotes did not break out


def test_html_embeds_one_decodable_png_per_swept_action(
    page: str, report: CalibrationReport
) -> None:
    from matplotlib.image import imread

    imgs = [a for t, a in _parse(page).tags if t == "img"]
    actions = len(report.current) + len(report.candidate or ())
    assert len(imgs) == actions == 4
    for attrs in imgs:
        src = attrs["src"]
        assert src is not None
        png = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        height, width, _ = imread(io.BytesIO(png), format="png").shape
        assert width == 640 and height == 340
        assert "Precision and executions against execute_at" in (attrs["alt"] or "")


def test_html_tables_and_summary(page: str) -> None:
    assert page.count('<tr class="change">') == 3
    assert page.count('<tr class="sweep-point">') == 4 * len(THRESHOLDS)
    assert "0.95 (38/40, 95% CI 0.83-0.99)" in page
    assert "60 alerts replayed in shadow mode, 41 of them labelled" in page
    assert "3 actions change disposition" in page
    assert page == as_html(build_report(_current(), _candidate(), alerts=60))  # reproducible


@pytest.mark.parametrize(
    ("candidate", "message"),
    [(None, "No candidate configuration was given."), ([], "No actions put forward.")],
)
def test_html_says_what_is_missing(candidate: list[ActionOutcome] | None, message: str) -> None:
    page = as_html(build_report([outcome("a")], candidate, alerts=1))
    assert message in page


def test_html_without_a_sweep_draws_no_plot_and_needs_no_matplotlib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bare = ActionOutcome(**{**outcome("a").__dict__, "at_threshold": {}})
    report = build_report([bare], alerts=1)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    page = as_html(report)
    assert "<img" not in page and "No threshold sweep was recorded" in page
    with pytest.raises(RuntimeError) as raised:
        as_html(build_report([outcome("a")], alerts=1))
    assert str(raised.value) == MISSING_EXTRA


def test_rendering_leaves_no_pyplot_state_behind() -> None:
    code = (
        "import sys\n"
        "from tests.unit.calibration.test_report import _current, _candidate\n"
        "from soc_agent.calibration.stats import build_report\n"
        "from soc_agent.calibration.report import as_html\n"
        "as_html(build_report(_current(), _candidate(), alerts=60))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=180)
