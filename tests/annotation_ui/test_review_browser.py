"""A real browser (Debian's headless Chromium via Playwright): every page the tool serves reads right,
and three clips are reviewed with the keyboard, one undone.

A failing page check saves a screenshot (under the test's tmp_path, or $VIDMUSICIAN_SCREENSHOTS when
set, which also keeps the screenshots of passing pages) and names it in the failure.
"""

from __future__ import annotations

import re

import pytest
from browser_helpers import PageCheck, sign_in
from review_helpers import LiveServer, make_annotator, seed
from sqlalchemy import select

from annotation_ui.app import create_app
from dvmset import review
from dvmset.tables import Clip, Decision
from flows.commands.review import peaks_decoder

CLIP_PEAKS = peaks_decoder()  # what `vidmusician review` passes as compute_peaks

CLIP_SHOWN = "() => document.getElementById('clip-id').textContent.length > 0"
WAVE_DRAWN = ("() => { const c = document.getElementById('wave'); const d = c.getContext('2d')"
              ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
              " for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n > 2000; }")


@pytest.mark.slow
def test_every_page_reads_right_in_chromium(browser, catalog, data_root, clip_media, tmp_path):
    ids = seed(catalog, data_root, 3, clip_media, title="A <i>food</i> commercial")
    with catalog.session() as s:  # QC hints as annotators read them (ids[1]: a clip curated before still_s)
        c = s.get(Clip, ids[0])
        c.still_s, c.limiting_db, c.clip_gain_db = 12.0, 2.5, 6.0
    ann_id, token = make_annotator(catalog, "ann", role="lead")  # a lead: the agreement page shows everyone
    bob_id, _ = make_annotator(catalog, "bob")
    with catalog.session() as s:
        review.set_policy(s, overlap=2)
    app = create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)
    with LiveServer(app) as base:
        tab = PageCheck(browser, tmp_path)
        try:
            sign_in = "sign in with your personal login link"
            tab.visit("review-signed-out", f"{base}/", status=401, must_show=["Sign in", sign_in])
            tab.visit("agreement-signed-out", f"{base}/agreement", status=401, must_show=["Sign in", sign_in])
            tab.visit("login-unknown-token", f"{base}/login?token=not-a-token", status=401,
                      must_show=["Sign in", "this login link is not valid"])
            tab.visit("login-confirm", f"{base}/login?token={token}", status=200,
                      must_show=["Sign in as ann?", "This login link belongs to ann"])
            with tab.page.expect_navigation():
                tab.page.click("#sign-in")
            qc = ["still picture", "12 s", "limiting", "2.5 dB"]
            tab.visit("review", f"{base}/", status=200, ready=f"() => ({CLIP_SHOWN})()",
                      must_show=["signed in as ann", ids[0], "A <i>food</i> commercial", "food commercial",
                                 "QC hints", "scene cuts", "3", "-14.2 LUFS", *qc, "Accept", "persistent noise",
                                 "0 done", "3 left", "0 by you", "Keys"])
            assert "static image" not in tab.page.inner_text("#qc")  # still seconds replace the ratio
            tab.page.wait_for_function(WAVE_DRAWN, timeout=15000)  # peaks computed, stored and drawn
            assert data_root.peaks_path(ids[0]).is_file()
            tab.page.keyboard.press("s")  # skip to ids[1]: no still seconds, no limiting measured
            tab.page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[1]}'")
            qc_text = tab.page.inner_text("#qc")
            assert "static image" in qc_text and "50 %" in qc_text and "limiting" not in qc_text, qc_text

            with catalog.session() as s:
                review.decide(s, ann_id, ids[0], "accept", policy=review.QueuePolicy(overlap=2))
            text = tab.visit("agreement-one-verdict", f"{base}/agreement", status=200,
                             must_show=["Agreement", "0 clips decided, 3 left", "1 clip has a verdict, 0 have two",
                                        "accept / reject", "reason: static", "ann", "bob"])
            assert "1 clips" not in text
            with catalog.session() as s:
                review.decide(s, bob_id, ids[0], "reject", ["noise"], policy=review.QueuePolicy(overlap=2))
                review.decide(s, bob_id, ids[1], "accept", policy=review.QueuePolicy(overlap=2))
                review.decide(s, ann_id, ids[1], "accept", policy=review.QueuePolicy(overlap=2))
            tab.visit("agreement", f"{base}/agreement", status=200,
                      must_show=["2 clips decided, 1 left", "2 clips have a verdict, 2 have two or more",
                                 "2 clips × 2 raters", "ann–bob", "(2 shared clips)"])
            cells = tab.page.locator("tbody tr td:nth-child(3)").all_inner_texts()[:6]
            assert cells and all(re.fullmatch(r"–|\d+ clips? × \d+ raters?", c) for c in cells), cells

            with catalog.session() as s:
                review.decide(s, ann_id, ids[2], "accept", policy=review.QueuePolicy(overlap=2))
            text = tab.visit("review-queue-empty", f"{base}/", status=200, ready="() => !document.getElementById('empty').hidden",
                      must_show=["Queue empty: nothing left for you to review", "Progress"])
            assert "QC hints" not in text and "clip at" not in text  # no empty clip cards
        finally:
            tab.close()


@pytest.mark.slow
def test_keyboard_only_review_in_chromium(browser, sync_api, catalog, data_root, clip_media, tmp_path):
    ids = seed(catalog, data_root, 4, clip_media, title="<b>Cooking</b> & co")
    _, token = make_annotator(catalog, "ann")
    app = create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)
    media_status: list[int] = []
    with LiveServer(app) as base:
        tab = PageCheck(browser, tmp_path)
        page = tab.page
        page.on("response", lambda r: media_status.append(r.status) if "/media/" in r.url else None)
        try:
            sign_in(page, base, token)
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
            page.wait_for_function(WAVE_DRAWN)  # the waveform has been drawn from server peaks

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
        except Exception as exc:
            shot = tmp_path / "keyboard-review.png"
            page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(f"keyboard review: {exc}\nscreenshot: {shot}") from exc
        finally:
            problems = list(tab.problems)
            tab.close()
    assert problems == []
    assert media_status and all(s == 206 for s in media_status), media_status  # never a whole-file download
    with catalog.session() as s:
        status = {c.id: c.status for c in s.scalars(select(Clip))}
        rows = [(d.clip_id, d.verdict, d.reasons, d.note) for d in s.scalars(select(Decision).order_by(Decision.id))]
    assert status == {ids[0]: "accepted", ids[1]: "rejected", ids[2]: "pending_review", ids[3]: "pending_review"}
    assert rows[:3] == [(ids[0], "accept", [], None), (ids[1], "reject", ["noise"], None),
                        (ids[2], "reject", ["other"], "talking head throughout")]
    assert rows[3][:2] == (ids[2], "undo") and len(rows) == 4
