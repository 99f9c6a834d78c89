"""A lead's side of the review tool: roles, gold clips (a page and the API; mixed unmarked into the
queue, scored apart), adjudication, and the agreement page's listening time and gold accuracy.
The browser test drives real Chromium: a lead marks a gold clip through the form, reads an
annotator's accuracy with its interval, and settles a disagreement."""

from __future__ import annotations

import pytest
from browser_helpers import PageCheck, sign_in
from review_helpers import LiveServer, make_annotator, seed
from sqlalchemy import func, select

from annotation_ui.app import create_app
from dvmset import gold, review
from dvmset.tables import Adjudication, Clip, Decision, GoldAnswer
from flows.cli import main
from flows.commands.review import peaks_decoder

CLIP_PEAKS = peaks_decoder()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_lead_pages_are_for_leads_only(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 2)
    _, ann = make_annotator(catalog, "ann")
    _, lead = make_annotator(catalog, "lea", role="lead")
    client = make_client()
    for path in ("/lead/gold", "/lead/adjudicate"):
        r = client.get(path, headers=bearer(ann))
        assert r.status_code == 403 and "for leads" in r.text
        assert client.get(path, headers=bearer(lead)).status_code == 200
    r = client.post("/lead/gold", data={"clip_id": ids[0], "verdict": "accept"}, headers=bearer(ann))
    assert r.status_code == 403
    assert client.get("/api/lead/disagreements", headers=bearer(ann)).status_code == 403
    with catalog.session() as s:
        assert gold.list_gold(s) == []  # the refused mark changed nothing
    nav = client.get("/agreement", headers=bearer(lead)).text
    assert 'href="/lead/gold"' in nav and 'href="/lead/gold"' not in client.get("/agreement", headers=bearer(ann)).text


def test_gold_through_the_api_is_handed_unmarked_and_never_a_vote(make_client, catalog, data_root):
    ids = seed(catalog, data_root, 12)
    ann_id, ann = make_annotator(catalog, "ann")
    _, lead = make_annotator(catalog, "lea", role="lead")
    client = make_client()
    r = client.post("/lead/gold", data={"clip_id": ids[5], "verdict": "reject", "reasons": ["noise", "static"],
                                        "note": "hiss"}, headers=bearer(lead), follow_redirects=False)
    assert r.status_code == 303 and "is+gold" in r.headers["location"]
    r = client.post("/lead/gold", data={"clip_id": "../etc", "verdict": "accept"}, headers=bearer(lead))
    assert r.status_code == 422
    r = client.post("/lead/gold/rate", data={"percent": "50"}, headers=bearer(lead), follow_redirects=False)
    assert r.status_code == 303
    seen, normal_keys, gold_keys = [], None, None
    for _ in range(20):
        clip = client.get("/api/next", headers=bearer(ann)).json()["clip"]
        if clip is None:
            break
        seen.append(clip["id"])
        if clip["id"] == ids[5]:
            gold_keys = set(clip)
        else:
            normal_keys = set(clip)
        r = client.post("/api/decisions", json={"clip_id": clip["id"], "verdict": "accept"}, headers=bearer(ann))
        assert r.status_code == 201 and r.json()["clip_status"] == "accepted"  # a gold clip's answer too
    assert ids[5] in seen and len(seen) == 12 and gold_keys == normal_keys  # handed, unmarked
    assert client.get("/api/progress", headers=bearer(ann)).json()["mine"] == 12  # the gold answer counts
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision).where(Decision.clip_id == ids[5])) == 0
        assert s.scalar(select(func.count()).select_from(GoldAnswer).where(GoldAnswer.annotator_id == ann_id)) == 1
        assert s.get(Clip, ids[5]).status == "rejected"  # the gold verdict stands
    rep = client.get("/api/agreement", headers=bearer(lead)).json()
    assert rep["figures"]["ann"]["gold"]["answered"] == 1 and rep["figures"]["ann"]["gold"]["correct"] == 0
    listening = rep["figures"]["ann"]["listening"]  # the server measured each verdict: the client decided at once
    assert listening["clips"] == 11 and listening["median_s"] < 5  # 11 ordinary verdicts; the gold answer is not one
    assert [p["decisions"] for p in rep["annotators"] if p["name"] == "ann"] == [11]  # the gold answer is no vote
    r = client.post("/api/undo", headers=bearer(ann))  # gold or not, an undo reads the same
    assert r.status_code == 200 and r.json()["clip_status"] == "pending_review"


def test_gold_command_adds_lists_and_removes(catalog, data_root, capsys):
    ids = seed(catalog, data_root, 3)
    root = ["--root", str(data_root.path)]
    assert main(["review", "gold", "add", ids[0], ids[1], "--verdict", "reject", "--reason", "noise", *root]) == 0
    assert "2 gold clip(s) marked reject" in capsys.readouterr().out
    assert main(["review", "gold", "add", ids[2], "--verdict", "reject", *root]) == 2
    assert "needs at least one reason" in capsys.readouterr().err
    assert main(["review", "gold", "rate", "20", *root]) == 0
    assert main(["review", "gold", "list", *root]) == 0
    out = capsys.readouterr().out
    assert "2 gold clip(s), mixed in at 20 %" in out and f"{ids[0]}\treject (noise)\t0/0 answers agree" in out
    assert main(["review", "gold", "remove", ids[0], *root]) == 0
    with catalog.session() as s:
        assert [g["clip_id"] for g in gold.list_gold(s)] == [ids[1]]
        assert s.get(Clip, ids[0]).status == "pending_review"
    assert main(["review", "gold", "remove", "nope", *root]) == 2
    assert "is not gold" in capsys.readouterr().err
    assert main(["annotators", "add", "lea", "--role", "lead", *root]) == 0
    assert main(["annotators", "add", "ann", *root]) == 0
    assert main(["annotators", "role", "ann", "lead", *root]) == 0
    assert "ann is now a lead" in capsys.readouterr().out
    assert main(["annotators", "list", *root]) == 0
    assert capsys.readouterr().out.count("\tlead") == 2


@pytest.mark.slow
def test_a_lead_marks_gold_reads_accuracy_and_settles_a_disagreement_in_chromium(
        browser, catalog, data_root, clip_media, tmp_path):
    ids = seed(catalog, data_root, 6, clip_media)
    _, lead_token = make_annotator(catalog, "lea", role="lead")
    ann_id, ann_token = make_annotator(catalog, "ann")
    bob_id, _ = make_annotator(catalog, "bob")
    with catalog.session() as s:
        review.set_policy(s, overlap=2)
    app = create_app(data_root, catalog, compute_peaks=CLIP_PEAKS)
    with LiveServer(app) as base:
        tab = PageCheck(browser, tmp_path)
        page = tab.page
        try:
            sign_in(page, base, ann_token)  # an annotator first: the lead pages refuse them
            tab.visit("gold-as-annotator", f"{base}/lead/gold", status=403,
                      must_show=["For leads", "the gold clips page is for leads"])
            page.context.clear_cookies()
            sign_in(page, base, lead_token)
            tab.visit("gold-empty", f"{base}/lead/gold", status=200,
                      must_show=["Gold clips", "0 gold clips", "no gold clips yet", "gold clips", "adjudication"])
            page.fill("input[name=clip_id]", ids[4])
            page.check("input[name=verdict][value=reject]")
            page.check("#add-gold input[name=reasons][value=noise]")
            page.fill("#add-gold input[name=note]", "mains hum")
            with page.expect_navigation():
                page.click("#add-gold button[type=submit]")
            tab.visit("gold-one", page.url, status=200,
                      must_show=[f"{ids[4]} is gold: reject", "1 gold clip", ids[4], "reject", "noise", "mains hum"])
            page.fill("input[name=percent]", "10")
            with page.expect_navigation():
                page.click("form[action='/lead/gold/rate'] button")
            assert "gold clips are now 10 % of the clips handed out" in page.inner_text("body")

            with catalog.session() as s:  # ann answers the gold clip wrongly, another one rightly
                gold.add_gold(s, ids[5], "accept")
                review.decide(s, ann_id, ids[4], "accept")
                review.decide(s, ann_id, ids[5], "accept")
                # a disagreement on ids[2] with notes; agreement on ids[3] (ids[0] is leased by the sign-ins)
                review.decide(s, ann_id, ids[2], "accept", note="a piano, all through")
                review.decide(s, bob_id, ids[2], "reject", ["non_music"], note="talking at 0:40")
                review.decide(s, ann_id, ids[3], "accept")
                review.decide(s, bob_id, ids[3], "accept")
            text = tab.visit("agreement-lead", f"{base}/agreement", status=200,
                             must_show=["gold accuracy (95 % interval)", "50 % (9–91 %), 1 of 2 gold clips",
                                        "median listening", "You are a lead", "ann", "bob"])
            rows = {r.split("\t")[0]: r for r in page.locator("tbody tr").all_inner_texts()}
            assert rows["bob"].rstrip().endswith("—")  # no gold answered: a dash, not 0 %

            tab.visit("adjudicate", f"{base}/lead/adjudicate", status=200,
                      must_show=["Adjudication", "1 clip to settle", ids[2], "ann: keep", "“a piano, all through”",
                                 "bob: reject (non music)", "“talking at 0:40”", "QC hints", "silence 2 %",
                                 "scene cuts 3", "Settle: keep"])
            assert ids[3] not in page.inner_text("main")  # both kept: nothing to settle
            with page.expect_navigation():
                page.click("#adj-1 button[value=accept]")
            tab.visit("adjudicated", page.url, status=200,
                      must_show=[f"{ids[2]} settled: accepted", "0 clips to settle", "No disagreements to settle"])
            with catalog.session() as s:
                assert s.get(Clip, ids[2]).status == "accepted"
                adj = s.scalars(select(Adjudication)).one()
                assert (adj.clip_id, adj.verdict) == (ids[2], "accept")
            page.context.clear_cookies()
            sign_in(page, base, ann_token)
            text = tab.visit("agreement-annotator", f"{base}/agreement", status=200,
                             must_show=["ann", "50 % (9–91 %), 1 of 2 gold clips", "You see your own figures"])
            assert "bob" not in page.inner_text("table:last-of-type tbody")
        finally:
            tab.close()
    assert text


def test_a_server_started_with_an_order_hands_clips_in_it(catalog, data_root):
    """Decided clips: silent ones rejected, loud ones kept; pending: the lowest ids silent, the last one
    not. --order likely-keep hands the last one first; the plain queue the first id."""
    from fastapi.testclient import TestClient

    ids = seed(catalog, data_root, 20)
    with catalog.session() as s:
        for i, c in enumerate(ids):
            clip = s.get(Clip, c)
            clip.silence_ratio = 0.9 if (i % 2 or i >= 12) else 0.0
            if i < 12:
                clip.status = "rejected" if i % 2 else "accepted"
        s.get(Clip, ids[-1]).silence_ratio = 0.0
    _, token = make_annotator(catalog, "ann")
    with pytest.raises(ValueError, match="expected one of queue, uncertain, likely-keep"):
        create_app(data_root, catalog, order="random")
    ranked = TestClient(create_app(data_root, catalog, order="likely-keep"))
    assert ranked.get("/api/next", headers=bearer(token)).json()["clip"]["id"] == ids[-1]
    _, other = make_annotator(catalog, "bob")
    plain = TestClient(create_app(data_root, catalog))
    assert plain.get("/api/next", headers=bearer(other)).json()["clip"]["id"] == ids[12]
