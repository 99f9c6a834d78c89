"""Review v2 in a real browser (Debian's headless Chromium via Playwright): an annotator keeps the good part
of a clip by marking spans (keys at the playhead and a mouse drag) and accepts the rest; undo takes back a
skip; skipped clips come back; a verdict given too soon asks for confirmation (visible at 1366x768);
several reasons and a note go with a reject and are shown back; the help overlay; the 800 px layout.

Screenshots go to $VIDMUSICIAN_SCREENSHOTS when set (else the test's tmp_path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser_helpers import LEAKS, sign_in
from review_helpers import LiveServer, make_annotator, seed
from sqlalchemy import select

from annotation_ui.app import create_app
from dvmset.spans import excluded_spans
from dvmset.tables import Clip, Decision
from flows.commands.review import peaks_decoder

CLIP_PEAKS = peaks_decoder()
READY = "() => document.getElementById('video').readyState >= 1 && document.getElementById('video').duration > 50"


@pytest.fixture(scope="module")
def minute_media(media_factory) -> Path:
    return media_factory("review-60s", duration_s=60.0, size="96x64", fps=10, cut_every_s=10.0)


def shot(page, tmp_path: Path, name: str) -> Path:  # noqa: ANN001 - a Playwright Page
    folder = Path(os.environ.get("VIDMUSICIAN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def visible_text(page) -> str:  # noqa: ANN001
    text = page.inner_text("body")
    leak = LEAKS.search(text)
    assert leak is None, f"{leak.group(0)!r} shown; page reads:\n{text}"
    return text


@pytest.mark.slow
def test_mark_spans_and_accept_the_rest_in_chromium(browser, sync_api, catalog, data_root, minute_media, tmp_path):
    ids = seed(catalog, data_root, 2, minute_media, title="A cooking show")
    _, token = make_annotator(catalog, "ann")
    app = create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)
    expect = sync_api.expect
    with LiveServer(app) as base:
        ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        page = ctx.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        try:
            sign_in(page, base, token)
            expect(page.locator("#clip-id")).to_have_text(ids[0])
            page.wait_for_function(READY, timeout=20000)
            expect(page.locator("#windows-kept")).to_have_text(re.compile(r"^Keeps all 31 training windows \(60 s\)"))
            for _ in range(10):  # the playhead to 50 s, five seconds a press
                page.keyboard.press("l")
            page.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 50) < 0.01")
            page.keyboard.press("t")  # new stretches: noise
            page.keyboard.press("i")
            expect(page.locator("#span-start")).to_have_text("span starts at 0:50.0: O ends it")
            page.keyboard.press("l")
            page.wait_for_function("() => Math.abs(document.getElementById('video').currentTime - 55) < 0.01")
            page.keyboard.press("o")
            # the example: a bad stretch at 50-55 s leaves the 30 s windows from 0-20 s
            expect(page.locator("#windows-kept")).to_have_text(
                "Keeps 21 of 31 training windows (55 of 60 s); A accepts the rest")
            expect(page.locator("#spans")).to_contain_text("0:50.0–0:55.0 noise")

            box = page.locator("#wave").bounding_box()  # drag across about 4-8 s, marked as vocals
            page.keyboard.press("t")
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] * 4 / 60, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 6 / 60, y, steps=4)
            page.mouse.move(box["x"] + box["width"] * 8 / 60, y, steps=4)
            page.mouse.up()
            expect(page.locator("#spans li")).to_have_count(2)
            expect(page.locator("#spans")).to_contain_text("vocals")
            kept = page.inner_text("#windows-kept")
            m = re.fullmatch(r"Keeps (\d+) of 31 training windows \((\d+) of 60 s\); A accepts the rest", kept)
            assert m and 11 <= int(m.group(1)) <= 13 and 50 <= int(m.group(2)) <= 52, kept  # offsets 8-20, give or take
            text = visible_text(page)
            assert "Leave out" in text and "0:50.0–0:55.0 noise" in text
            shot(page, tmp_path, "v2-spans-marked")

            page.keyboard.press("a")
            expect(page.locator("#clip-id")).to_have_text(ids[1])
            expect(page.locator("#status")).to_contain_text(f"Accepted {ids[0]}, keeping")
            expect(page.locator("#status")).to_contain_text("(2 stretches left out). Press U to undo.")
            expect(page.locator("#windows-kept")).to_have_text(re.compile("^Keeps all 31"))  # a new clip: no spans
            expect(page.locator("#mine-list")).to_contain_text(f"{ids[0]}: accepted, 2 stretches left out")
            shot(page, tmp_path, "v2-spans-accepted")
        finally:
            ctx.close()
    assert problems == []
    with catalog.session() as s:
        assert s.get(Clip, ids[0]).status == "accepted"
        row = s.scalars(select(Decision).where(Decision.clip_id == ids[0])).one()
        spans = excluded_spans(s)[ids[0]]
    assert row.verdict == "accept" and row.listened_s is not None and row.listened_s > 0
    assert (spans[1].start_s, spans[1].end_s, spans[1].reason) == (50.0, 55.0, "noise")
    assert spans[0].reason == "vocals" and spans[0].start_s == pytest.approx(4, abs=0.3)
    assert spans[0].end_s == pytest.approx(8, abs=0.3)


@pytest.mark.slow
def test_skip_undo_confirmation_reasons_and_layout_in_chromium(browser, sync_api, catalog, data_root, clip_media,
                                                               tmp_path):
    ids = seed(catalog, data_root, 2, clip_media, title="A trailer")
    _, token = make_annotator(catalog, "ann")
    app = create_app(data_root, catalog, compute_peaks=CLIP_PEAKS, min_listen_s=30)
    expect = sync_api.expect
    with LiveServer(app) as base:
        ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        try:
            sign_in(page, base, token)
            clip_id = page.locator("#clip-id")
            expect(clip_id).to_have_text(ids[0])
            page.keyboard.press("s")
            expect(clip_id).to_have_text(ids[1])
            expect(page.locator("#skipped")).to_contain_text(f"{ids[0]} (back at")
            page.keyboard.press("u")  # right after a skip: the skipped clip comes back, no verdict is undone
            expect(clip_id).to_have_text(ids[0])
            expect(page.locator("#status")).to_have_text(f"Took back your skip: {ids[0]} is yours again.")
            expect(page.locator("#skipped-card")).to_be_hidden()
            page.keyboard.press("s")
            expect(clip_id).to_have_text(ids[1])

            page.keyboard.press("n")  # a note, then two reasons: tick "static images", press 2 (noise)
            expect(page.locator("#note")).to_be_focused()
            page.keyboard.type("hum under the music, then a still")
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_have_text("Your note goes with your next verdict.")
            page.keyboard.press("Shift+Digit3")
            expect(page.locator("#reason-picks input[value='static']")).to_be_checked()
            page.keyboard.press("2")
            confirm = page.locator("#confirm")
            expect(confirm).to_be_visible()
            expect(confirm).to_contain_text("listen for at least 30 s before a verdict. Press Enter to give it anyway")
            cbox, vh = confirm.bounding_box(), page.viewport_size["height"]
            assert cbox["y"] >= 0 and cbox["y"] + cbox["height"] <= vh, (cbox, vh)  # on screen at 1366x768
            shot(page, tmp_path, "v2-confirm-1366x768")
            with catalog.session() as s:
                assert s.scalars(select(Decision)).all() == []  # nothing taken before the confirmation
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_contain_text(
                f"Rejected (persistent noise; static images) {ids[1]}, with your note. Press U to undo.")
            expect(page.locator("#mine-list")).to_contain_text("hum under the music, then a still")

            # ids[0] is skipped, ids[1] decided: the queue is empty and says why, and when the skip ends
            expect(page.locator("#empty")).to_be_visible()
            expect(page.locator("#empty-why")).to_contain_text("You skipped 1 clip; the first comes back at")
            visible_text(page)
            shot(page, tmp_path, "v2-empty-skipped")
            page.locator("#skipped button").click()  # bring it back now
            expect(clip_id).to_have_text(ids[0])
            expect(page.locator("#status")).to_have_text(f"Brought back {ids[0]}.")

            page.keyboard.press("?")
            expect(page.locator("#help")).to_be_visible()
            expect(page.locator("#help")).to_contain_text("take back the skip you just made")
            shot(page, tmp_path, "v2-help")
            page.keyboard.press("Escape")
            expect(page.locator("#help")).to_be_hidden()
            page.keyboard.press("m")
            expect(page.locator("#volume")).to_have_text("muted")
            page.keyboard.press("-")
            expect(page.locator("#volume")).to_have_text("90 %")

            page.set_viewport_size({"width": 800, "height": 900})
            accept = page.locator("button.accept").bounding_box()
            aside = page.locator("aside.side").bounding_box()
            player = page.locator("section.player").bounding_box()
            assert accept["x"] + accept["width"] <= 800 and player["width"] <= 800
            assert aside["y"] >= player["y"] + player["height"] - 1  # one column: the side cards below
            assert page.evaluate("document.documentElement.scrollWidth") <= 800  # no sideways scrolling
            shot(page, tmp_path, "v2-narrow-800")
        finally:
            ctx.close()
    assert errors == []
    with catalog.session() as s:
        row = s.scalars(select(Decision).where(Decision.clip_id == ids[1])).one()
    assert (row.verdict, row.reasons, row.note) == ("reject", ["noise", "static"], "hum under the music, then a still")
    assert row.listened_s is not None and row.listened_s < 30


SPEC_DRAWN = ("() => { const c = document.getElementById('spec'); const d = c.getContext('2d')"
              ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
              " for (let i = 0; i < d.length; i += 4) n += d[i] + d[i + 1] > 120; return n > 1000; }")


@pytest.mark.slow
def test_spectrogram_axis_zoom_and_timeline_hints_in_chromium(browser, sync_api, catalog, data_root, minute_media,
                                                              tmp_path):
    from pipeline.qc import qc_clip

    ids = seed(catalog, data_root, 2, minute_media, title="A music video")
    # ids[0] curated now: QC stores peaks, spectrogram and hints beside it (vocals: seconds 30-34 sung over)
    vocals = [0.6 if 30 <= i < 34 else 0.0 for i in range(60)]
    report = qc_clip(data_root.clip_path(ids[0]), peaks_path=data_root.peaks_path(ids[0]), vocals_per_s=vocals)
    _, token = make_annotator(catalog, "ann")
    app = create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)
    expect = sync_api.expect
    with LiveServer(app) as base:
        ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        page = ctx.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        try:
            sign_in(page, base, token)
            expect(page.locator("#clip-id")).to_have_text(ids[0])
            page.wait_for_function(READY, timeout=20000)
            page.wait_for_function(SPEC_DRAWN, timeout=15000)  # the stored spectrogram, drawn
            cuts = len(report.cut_times_s)
            expect(page.locator("#hints-note")).to_contain_text(
                f"On the timeline: {cuts} scene cut{'s' if cuts != 1 else ''}, ")
            expect(page.locator("#hints-note")).to_contain_text("4 s with residual vocals")
            assert page.inner_text("#spec-note") == ""
            # the vocals row is drawn over seconds 30-34 and nowhere else
            row = page.evaluate("""() => { const c = document.getElementById('hints'), g = c.getContext('2d');
                const y = Math.floor(c.height * 3.5 / 4), d = g.getImageData(0, y, c.width, 1).data, xs = [];
                for (let x = 0; x < c.width; x++) if (d[x * 4 + 3] > 0) xs.push(x); return [xs[0], xs[xs.length - 1], c.width]; }""")
            assert row[0] == pytest.approx(row[2] * 30 / 60, abs=2) and row[1] == pytest.approx(row[2] * 34 / 60, abs=2)
            visible_text(page)
            shot(page, tmp_path, "v2-spectrogram-hints")
            page.keyboard.press("z")
            page.keyboard.press("z")
            expect(page.locator("#zoom")).to_have_text("4× (0:00–0:15)")
            page.keyboard.press("Shift+Z")
            expect(page.locator("#zoom")).to_have_text("2× (0:00–0:30)")
            shot(page, tmp_path, "v2-zoomed")

            page.keyboard.press("s")  # ids[1] was curated before spectrograms: the page says so, no error
            expect(page.locator("#clip-id")).to_have_text(ids[1])
            expect(page.locator("#spec-note")).to_have_text(
                "No spectrogram stored for this clip (curated before they were stored).")
        finally:
            ctx.close()
    assert problems == []
    assert not data_root.peaks_path(ids[1]).with_name(f"{ids[1]}.spec.npy").exists()  # served, never computed
