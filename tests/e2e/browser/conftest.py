"""Real headless Chromium (Debian's `chromium`) driven by Playwright; never a downloaded browser.

Without Chromium the browser tests skip with one line saying what to install,
except under CI (`CI=true`), where a missing browser is a failure: CI must
prove the UI, not skip it. `make test` installs the package when it can.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("SOC_AGENT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING = (
    "browser tests need Chromium at {path}: install the Debian package "
    "(`apt-get install chromium`, or `make test` as root) or set SOC_AGENT_CHROMIUM"
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A launched headless Chromium browser, shared by a module's tests."""
    if not (CHROMIUM.exists() or shutil.which(str(CHROMIUM))):
        _unavailable(MISSING.format(path=CHROMIUM))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("browser tests need Playwright for Python: pip install -e '.[dev]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
