"""Browser helpers for the review tool's tests: Debian's headless Chromium via Playwright, a tab that
records every error, and signing in through the login link's confirm button."""

from __future__ import annotations

import os
import re
from pathlib import Path

CHROMIUM = Path(os.environ.get("VIDMUSICIAN_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]
KEEP = os.environ.get("VIDMUSICIAN_SCREENSHOTS")  # a folder: keep every page's screenshot there
# Text that means a template printed a Python object, an undefined value or its own syntax.
LEAKS = re.compile(r"object at 0x|<built-in|<bound method|Traceback|\bNone\b|\bundefined\b|\bNaN\b|\{\{|\{%|%\}|`")


class PageCheck:
    """One browser tab that records console errors, page errors and failed responses per visit."""

    def __init__(self, browser, artefacts: Path) -> None:  # noqa: ANN001 - a Playwright Browser
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.artefacts = artefacts
        self.problems: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("response", lambda r: self.problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    def visit(self, name: str, url: str, *, status: int, must_show: list[str], ready: str | None = None) -> str:
        """Open ``url``; its visible text must show each of ``must_show`` and no leaked object; no errors
        but the page's own expected status. Returns the visible text."""
        self.problems.clear()
        try:
            resp = self.page.goto(url, wait_until="load")
            if ready:
                self.page.wait_for_function(ready, timeout=15000)
            self.page.wait_for_load_state("networkidle")
            text = self.page.inner_text("body")
            assert resp is not None and resp.status == status, (resp and resp.status, text[:300])
            for want in must_show:
                assert want in text, f"{want!r} not shown; page reads:\n{text}"
            leak = LEAKS.search(text)
            assert leak is None, f"{leak.group(0)!r} shown; page reads:\n{text}"
            own = f"{status} {url}" if status >= 400 else None  # the page's own answer, e.g. a 401 sign-in page
            unexpected = [p for p in self.problems if p != own and not (own and f"status of {status}" in p)]
            assert unexpected == [], unexpected
        except Exception as exc:
            shot = self.artefacts / f"{name}.png"
            self.page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(f"page {name!r} ({url}): {exc}\nscreenshot: {shot}") from exc
        if KEEP:
            Path(KEEP).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(KEEP) / f"{name}.png"), full_page=True)
        return text

    def close(self) -> None:
        self.context.close()


def sign_in(page, base: str, token: str) -> None:  # noqa: ANN001 - a Playwright Page
    """Open the login link and press its button, as an annotator does; lands on the review page."""
    page.goto(f"{base}/login?token={token}")
    with page.expect_navigation():
        page.click("#sign-in")
