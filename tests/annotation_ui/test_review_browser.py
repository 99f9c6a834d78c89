"""A real browser (Debian's headless Chromium via Playwright): review three clips with the keyboard, undo one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from review_helpers import LiveServer, make_annotator, seed
from sqlalchemy import select

from annotation_ui.app import create_app
from dvmset.tables import Clip, Decision
from flows.commands.review import clip_peaks

CHROMIUM = Path(os.environ.get("VIDMUSICIAN_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]
SCREENSHOT = Path(os.environ.get("VIDMUSICIAN_SCREENSHOT", "/tmp/vidmusician-review.png"))


@pytest.mark.slow
def test_keyboard_only_review_in_chromium(catalog, data_root, clip_media):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}")
    ids = seed(catalog, data_root, 4, clip_media, title="<b>Cooking</b> & co")
    _, token = make_annotator(catalog, "ann")
    app = create_app(data_root, catalog, compute_peaks=clip_peaks)
    problems: list[str] = []
    media_status: list[int] = []
    with LiveServer(app) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("response", lambda r: media_status.append(r.status) if "/media/" in r.url else None)
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{base}/login?token={token}")
            clip_id = page.locator("#clip-id")
            sync_api.expect(clip_id).to_have_text(ids[0])
            assert page.locator("#src-title").text_content() == "<b>Cooking</b> & co"  # shown as text
            page.wait_for_function("() => document.getElementById('video').readyState >= 1", timeout=15000)
            duration = page.evaluate("document.getElementById('video').duration")
            assert duration == pytest.approx(8.0, abs=0.5)
            page.keyboard.press("l")  # seek +5 s
            page.wait_for_function("() => document.getElementById('video').currentTime >= 4.9")
            page.keyboard.press("j")  # seek -5 s
            page.wait_for_function("() => document.getElementById('video').currentTime < 0.5")
            page.keyboard.press("]")
            sync_api.expect(page.locator("#speed")).to_have_text("1.25×")
            page.keyboard.press("k")  # play
            page.wait_for_function("() => !document.getElementById('video').paused")
            page.keyboard.press("k")  # pause
            page.wait_for_function("() => document.getElementById('video').paused")
            page.wait_for_function(  # the waveform has been drawn from server peaks
                "() => { const c = document.getElementById('wave'); const d = c.getContext('2d')"
                ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
                " for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n > 2000; }")

            page.keyboard.press("a")  # accept
            sync_api.expect(clip_id).to_have_text(ids[1])
            page.keyboard.press("2")  # reject: persistent noise
            sync_api.expect(clip_id).to_have_text(ids[2])
            page.keyboard.press("5")  # reject: other -> note
            sync_api.expect(page.locator("#note")).to_be_focused()
            page.keyboard.type("talking head throughout")
            page.keyboard.press("Enter")
            sync_api.expect(clip_id).to_have_text(ids[3])
            sync_api.expect(page.locator("#done")).to_have_text("3")
            page.keyboard.press("u")  # undo the last decision: clip 3 comes back
            sync_api.expect(clip_id).to_have_text(ids[2])
            sync_api.expect(page.locator("#done")).to_have_text("2")
            page.wait_for_function("() => document.getElementById('video').readyState >= 1", timeout=15000)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert media_status and all(s == 206 for s in media_status), media_status  # never a whole-file download
    with catalog.session() as s:
        status = {c.id: c.status for c in s.scalars(select(Clip))}
        rows = [(d.clip_id, d.verdict, d.reasons, d.note) for d in s.scalars(select(Decision).order_by(Decision.id))]
    assert status == {ids[0]: "accepted", ids[1]: "rejected", ids[2]: "pending_review", ids[3]: "pending_review"}
    assert rows[:3] == [(ids[0], "accept", [], None), (ids[1], "reject", ["noise"], None),
                        (ids[2], "reject", ["other"], "talking head throughout")]
    assert rows[3][:2] == (ids[2], "undo") and len(rows) == 4
