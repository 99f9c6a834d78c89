"""The review page attacked and faulted in a real browser (Debian's headless Chromium), issue 22: a site on
another port cannot undo or sign the browser in as someone else, the page renews its lease at the
server's pace, says when its session ended, keeps uploaders' direction controls from reversing text,
and sends a verdict again when the catalog comes back."""

from __future__ import annotations

import time

import pytest
from browser_helpers import sign_in
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from review_helpers import LiveServer, make_annotator, outage, seed
from sqlalchemy import func, select

from annotation_ui.app import create_app
from dvmset import review
from dvmset.tables import Clip, Decision
from flows.cli import main
from flows.commands.review import peaks_decoder

pytestmark = pytest.mark.slow
CLIP_PEAKS = peaks_decoder()  # what `vidmusician review` passes: no waveform error to overwrite the status line


def statuses(catalog) -> dict[str, str]:  # noqa: ANN001
    with catalog.session() as s:
        return {c.id: c.status for c in s.scalars(select(Clip))}


def attacker_site(victim: str, mallory: str) -> FastAPI:
    """Pages another site (another port of the same host) would serve to a signed-in annotator."""
    site = FastAPI()

    def autosubmit(action: str, fields: str = "") -> HTMLResponse:
        return HTMLResponse(f'<form id="f" method="post" action="{victim}{action}">{fields}</form>'
                            '<script>document.getElementById("f").submit()</script>')

    site.get("/undo")(lambda: autosubmit("/api/undo"))
    site.get("/logout")(lambda: autosubmit("/logout"))
    site.get("/login-post")(lambda: autosubmit("/login", f'<input name="token" value="{mallory}">'))
    site.get("/login-link")(lambda: HTMLResponse(f'<script>location.href = "{victim}/login?token={mallory}"</script>'))
    return site


def test_another_site_can_neither_undo_nor_sign_the_browser_in_as_someone_else(browser, catalog, data_root,
                                                                                clip_media):
    """Items 3 and 4: a form on another port posting to /api/undo, /logout or /login gets 403 and changes
    nothing; a link to mallory's login only shows whose link it is until its button is pressed."""
    ids = seed(catalog, data_root, 2, clip_media)
    _, ann = make_annotator(catalog, "ann")
    _, mallory = make_annotator(catalog, "mallory")
    with LiveServer(create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)) as base, LiveServer(attacker_site(base, mallory)) as evil:
        ctx = browser.new_context()
        page = ctx.new_page()
        try:
            sign_in(page, base, ann)
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[0]}'")
            page.keyboard.press("a")
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[1]}'")
            assert statuses(catalog)[ids[0]] == "accepted"
            for attack, target in (("undo", "/api/undo"), ("logout", "/logout"), ("login-post", "/login")):
                with page.expect_response(lambda r, t=target: r.url == base + t) as got:
                    page.goto(f"{evil}/{attack}")
                assert got.value.status == 403, attack
                assert "cross-origin request refused" in page.inner_text("body")
            assert statuses(catalog)[ids[0]] == "accepted"  # the verdict stands

            page.goto(f"{evil}/login-link")
            page.wait_for_url(f"{base}/login?token=*")
            text = page.inner_text("body")
            assert "Sign in as mallory?" in text and "This browser is signed in as ann now" in text
            page.goto(f"{base}/")
            assert "signed in as ann" in page.inner_text("header")  # the GET signed nobody in
            page.keyboard.press("2")  # the next verdict is still ann's
            page.wait_for_function("() => document.getElementById('empty').hidden === false")
        finally:
            ctx.close()
    with catalog.session() as s:
        who = s.execute(select(review.Annotator.name, func.count()).join(Decision).group_by(review.Annotator.name)).all()
    assert who == [("ann", 2)]


def test_the_page_renews_its_lease_at_the_servers_pace(browser, catalog, data_root, clip_media):
    """Item 10: with 3-second leases, a clip open in the page for 8 s is never handed to another annotator."""
    ids = seed(catalog, data_root, 2, clip_media)
    _, ann = make_annotator(catalog, "ann")
    _, bob = make_annotator(catalog, "bob")
    with catalog.session() as s:
        review.set_policy(s, lease_s=3.0)
    with LiveServer(create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)) as base:
        ctx = browser.new_context()
        page = ctx.new_page()
        renewals: list[float] = []
        page.on("request", lambda r: renewals.append(time.monotonic()) if r.url.endswith("/api/next") else None)
        try:
            sign_in(page, base, ann)
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[0]}'")
            assert page.evaluate("JSON.parse(document.getElementById('initial-data').textContent).lease_s") == 3.0
            page.wait_for_timeout(8000)
            import httpx

            got = httpx.get(f"{base}/api/next", headers={"Authorization": f"Bearer {bob}"}).json()["clip"]["id"]
            assert got == ids[1], "the page's clip went to a second annotator"
            assert page.inner_text("#clip-id") == ids[0]
        finally:
            ctx.close()
    gaps = [b - a for a, b in zip(renewals, renewals[1:], strict=False)]
    assert len(renewals) >= 6 and max(gaps) < 3.0, gaps  # about every second (a third of 3 s): never lapsing


def test_the_page_says_when_its_session_ended(browser, catalog, data_root, clip_media, monkeypatch, capsys):
    """Item 17: after `annotators revoke` the page says the session ended, no longer "signed in as"."""
    monkeypatch.delenv("VIDMUSICIAN_DB", raising=False)
    ids = seed(catalog, data_root, 2, clip_media)
    _, ann = make_annotator(catalog, "ann")
    with LiveServer(create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)) as base:
        ctx = browser.new_context()
        page = ctx.new_page()
        try:
            sign_in(page, base, ann)
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[0]}'")
            assert main(["annotators", "revoke", "ann", "--root", str(data_root.path)]) == 0
            capsys.readouterr()
            page.keyboard.press("a")
            page.wait_for_function("() => document.getElementById('status').textContent.includes('session ended')")
            text = page.inner_text("body")
            assert "Your session ended (this login link was revoked or replaced): ask for a new login link" in text
            assert "signed in as" not in text and "signed out" in page.inner_text("header") and page.is_visible("#ended")
            assert page.is_disabled("button[data-action=accept]")
        finally:
            ctx.close()
    assert set(statuses(catalog).values()) == {"pending_review"}


def test_direction_controls_do_not_reverse_text_and_names_are_isolated(browser, catalog, data_root, clip_media):
    """Item 16 (and 15's pages): an uploader's right-to-left override does not reverse the title; a
    right-to-left name does not pull the numbers after it to its left; error pages are pages."""
    ids = seed(catalog, data_root, 4, clip_media, title="Cooking \u202etxet desrever", query="food \u202ecommercial")
    b_id, _ = make_annotator(catalog, "bob")
    a_id, ann = make_annotator(catalog, "אבי")
    with catalog.session() as s:  # three shared clips, labels that differ: a kappa with digits
        review.set_policy(s, overlap=2)
        for clip_id, mine, theirs in zip(ids, ("accept", "reject", "reject"), ("accept", "reject", "accept"),
                                         strict=False):
            review.decide(s, a_id, clip_id, mine, ["noise"] if mine == "reject" else [])
            review.decide(s, b_id, clip_id, theirs, ["noise"] if theirs == "reject" else [])
    with LiveServer(create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)) as base:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        try:
            sign_in(page, base, ann)
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[3]}'")
            assert page.inner_text("#clip-title") == "Cooking txet desrever"
            assert page.inner_text("#src-query") == "food commercial"
            left = page.evaluate("""(words) => {
                const node = document.getElementById('clip-title').firstChild, r = document.createRange();
                return words.map((w) => { const i = node.data.indexOf(w); r.setStart(node, i); r.setEnd(node, i + w.length);
                                          return r.getBoundingClientRect().left; }); }""", ["txet", "desrever"])
            assert left[0] < left[1], left  # read left to right, as typed
            for sel in ("#clip-title", "#src-title", "#src-query", "header bdi"):
                assert page.eval_on_selector(sel, "e => getComputedStyle(e).unicodeBidi") == "isolate", sel
            page.goto(f"{base}/agreement")
            # "bob–אבי: 0.400 (3 shared clips)": unisolated, the bidi algorithm shows the kappa left of the name
            pos = page.evaluate("""() => {
                const bdi = [...document.querySelectorAll('td bdi')].find((b) => b.textContent === 'אבי'
                                                          && b.nextSibling && b.nextSibling.data.includes('('));
                const tail = bdi.nextSibling, i = tail.data.search(/[0-9]/), r = document.createRange();
                r.setStart(tail, i); r.setEnd(tail, i + 1);
                return [bdi.getBoundingClientRect().right, r.getBoundingClientRect().left, tail.data]; }""")
            assert pos[2].startswith(": 0.") and pos[1] > pos[0], pos
            for url, status, shows in ((f"{base}/login?token={'x' * 300}", 401, "this login link is not valid"),
                                       (f"{base}/no/such/page", 404, "nothing at /no/such/page")):
                resp = page.goto(url)
                assert resp.status == status and shows in page.inner_text("main"), url
        finally:
            ctx.close()


def test_a_verdict_made_during_a_catalog_outage_is_sent_again(browser, postgres_catalog, data_root, clip_media):
    """Item 23 (page): the server answers 503 with Retry-After while the catalog is down; the page says so,
    sends the verdict again, and it is recorded once when the catalog is back."""
    catalog = postgres_catalog
    ids = seed(catalog, data_root, 2, clip_media)
    _, ann = make_annotator(catalog, "ann")
    with LiveServer(create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)) as base:
        ctx = browser.new_context()
        page = ctx.new_page()
        answers: list[int] = []
        page.on("response", lambda r: answers.append(r.status) if r.url.endswith("/api/decisions") else None)
        try:
            sign_in(page, base, ann)
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[0]}'")
            with outage(catalog):
                page.keyboard.press("a")
                page.wait_for_function(
                    "() => document.getElementById('status').textContent.includes('catalog is not answering')")
                assert "sending your verdict again in 5 s" in page.inner_text("#status")
                page.wait_for_timeout(2000)
            page.wait_for_function(f"() => document.getElementById('clip-id').textContent === '{ids[1]}'",
                                   timeout=20000)
            assert f"Accepted {ids[0]}" in page.inner_text("#status")
        finally:
            ctx.close()
    assert answers[0] == 503 and answers[-1] == 201, answers
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 1
    assert statuses(catalog)[ids[0]] == "accepted"
