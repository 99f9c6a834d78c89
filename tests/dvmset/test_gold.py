"""Gold clips, roles and adjudication in the catalog: gold is mixed into each queue at its rate, unmarked,
scored apart from the votes (Wilson interval); a lead's verdict settles a disagreement."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from dvmset import adjudication, gold, review
from dvmset.annotators import LEAD, LeadsOnly, require_lead, set_role
from dvmset.lead_figures import lead_figures, listening_by_annotator, visible_to
from dvmset.tables import Clip, Decision, GoldAnswer, Source


def _seed(catalog, n: int, source: str = "v") -> list[str]:
    ids = [f"{source}-{i:05d}" for i in range(n)]
    with catalog.session() as s:
        s.add(Source(id=source, url=f"https://example.org/{source}", status="done"))
        s.flush()
        s.add_all(Clip(id=c, source_id=source, start_s=0.0, duration_s=60.0, status="pending_review") for c in ids)
    return ids


def _people(catalog, *names: str) -> list[int]:
    with catalog.session() as s:
        return [review.add_annotator(s, n)[0].id for n in names]


def _review_all(catalog, who: int, verdict_of, limit: int = 10_000) -> list[str]:
    """Claim and decide until the queue is empty; returns the clip ids handed out, in order."""
    handed = []
    for _ in range(limit):
        with catalog.session() as s:
            clip = review.claim_next(s, who)
        if clip is None:
            return handed
        handed.append(clip)
        v = verdict_of(clip)
        with catalog.session() as s:
            review.decide(s, who, clip, v, [] if v == "accept" else ["noise"])
    raise AssertionError("queue never emptied")


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = gold.wilson(8, 10)  # Wilson 95 % for 8/10: 0.4902 .. 0.9433
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = gold.wilson(0, 5)
    assert lo == 0.0 and round(hi, 4) == 0.4345
    assert gold.wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        gold.wilson(3, 2)


def test_the_gold_draw_approaches_its_rate_and_differs_between_annotators():
    draws = [gold.draws_gold(1, k, 0.2) for k in range(4000)]
    assert 0.18 < sum(draws) / len(draws) < 0.22
    assert draws != [gold.draws_gold(2, k, 0.2) for k in range(4000)]
    assert not any(gold.draws_gold(1, k, 0.0) for k in range(500))


def test_gold_clips_are_mixed_in_unmarked_scored_apart_and_never_votes(any_catalog):
    catalog = any_catalog  # SQLite and Postgres
    ids = _seed(catalog, 60)
    ann, other = _people(catalog, "ann", "bob")
    gold_ids = ids[:6]
    with catalog.session() as s:
        for c in gold_ids[:3]:
            gold.add_gold(s, c, "accept")
        for c in gold_ids[3:]:
            gold.add_gold(s, c, "reject", ["noise"], "hum all through")
        gold.set_gold_rate(s, 0.25)
    with catalog.session() as s:
        assert {s.get(Clip, c).status for c in gold_ids} == {"accepted", "rejected"}  # settled: out of the queue
    # ann accepts everything: right on 3 gold clips, wrong on 3
    handed = _review_all(catalog, ann, lambda c: "accept")
    assert sorted(c for c in handed if c in gold_ids) == sorted(gold_ids)  # every gold clip, once
    assert len(handed) == 60 and len(set(handed)) == 60
    first_gold = [i for i, c in enumerate(handed) if c in gold_ids]
    assert first_gold[0] < 40  # mixed in along the way, not left to the end
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Decision).where(Decision.clip_id.in_(gold_ids))) == 0
        assert s.scalar(select(func.count()).select_from(GoldAnswer)) == 6
        assert s.get(Clip, gold_ids[4]).status == "rejected"  # ann's accept did not move a gold clip
        acc = gold.accuracy_by_annotator(s)
    assert (acc["ann"].answered, acc["ann"].correct) == (6, 3)
    assert (round(acc["ann"].low, 3), round(acc["ann"].high, 3)) == tuple(round(x, 3) for x in gold.wilson(3, 6))
    assert "bob" not in acc
    with catalog.session() as s:  # a gold answer is not given twice
        with pytest.raises(review.Conflict):
            review.decide(s, ann, gold_ids[0], "accept")
    # new clips come in; bob rejects the rejected gold ones and accepts the rest: always right. A queue
    # with no ordinary clip left hands no gold either (ann's ended above with all six answered).
    _seed(catalog, 60, "w")
    _review_all(catalog, other, lambda c: "reject" if c in gold_ids[3:] else "accept")
    with catalog.session() as s:
        acc = gold.accuracy_by_annotator(s)
        rows = {g["clip_id"]: g for g in gold.list_gold(s)}
    assert (acc["bob"].answered, acc["bob"].correct) == (6, 6)
    assert rows[gold_ids[4]] == {"clip_id": gold_ids[4], "verdict": "reject", "reasons": ["noise"],
                                 "note": "hum all through", "answers": 2, "correct": 1}


def test_rate_zero_hands_no_gold_and_a_held_gold_clip_is_renewed_not_swapped(catalog):
    ids = _seed(catalog, 5)
    ann, = _people(catalog, "ann")
    with catalog.session() as s:
        gold.add_gold(s, ids[0], "accept")
        gold.set_gold_rate(s, 0.0)
    handed = _review_all(catalog, ann, lambda c: "accept")
    assert ids[0] not in handed and len(handed) == 4
    with catalog.session() as s:
        gold.set_gold_rate(s, 0.5)
        gold.add_gold(s, ids[1], "accept")  # already decided by ann: gold now, still handed for scoring
    now = dt.datetime.now(dt.UTC)
    with catalog.session() as s:
        first = review.claim_next(s, ann, now=now)
    with catalog.session() as s:
        assert review.claim_next(s, ann, now=now + dt.timedelta(seconds=5)) == first  # the same clip, renewed
    with pytest.raises(ValueError, match="0 .none. to 0.5"):
        with catalog.session() as s:
            gold.set_gold_rate(s, 0.9)


def test_unmarking_gold_puts_an_unvoted_clip_back_and_bad_marks_are_refused(catalog):
    ids = _seed(catalog, 3)
    with catalog.session() as s:
        gold.add_gold(s, ids[0], "accept")
        with pytest.raises(review.InvalidDecision, match="needs at least one reason"):
            gold.add_gold(s, ids[1], "reject")
        with pytest.raises(review.NotFound):
            gold.add_gold(s, "nope", "accept")
    with catalog.session() as s:
        assert gold.remove_gold(s, ids[0]) == 0
        assert s.get(Clip, ids[0]).status == "pending_review"
        with pytest.raises(review.NotFound, match="not gold"):
            gold.remove_gold(s, ids[0])


def test_a_lead_settles_a_disagreement_and_it_leaves_the_list(any_catalog):
    catalog = any_catalog  # SQLite and Postgres
    ids = _seed(catalog, 3)
    a, b, lead = _people(catalog, "ann", "bob", "lea")
    with catalog.session() as s:
        review.set_policy(s, overlap=2)
    for who, verdicts in ((a, {ids[0]: "accept", ids[1]: "accept"}), (b, {ids[0]: "reject", ids[1]: "accept"})):
        for c, v in verdicts.items():
            with catalog.session() as s:
                review.decide(s, who, c, v, [] if v == "accept" else ["non_music"],
                              note="speech at 0:40" if v == "reject" else None)
    with catalog.session() as s:
        found = adjudication.disagreements(s)
        assert [c["clip_id"] for c in found] == [ids[0]]  # ids[1]: both kept, no disagreement
        assert s.get(Clip, ids[0]).status == "rejected"  # a tie rejects
        votes = {v["annotator"]: v for v in found[0]["votes"]}
        assert votes["bob"]["note"] == "speech at 0:40" and votes["bob"]["reasons"] == ["non_music"]
        with pytest.raises(review.Conflict, match="no disagreeing"):
            adjudication.adjudicate(s, lead, ids[1], "reject", ["noise"])
    with catalog.session() as s:
        adjudication.adjudicate(s, lead, ids[0], "accept", note="the speech is the singer's intro")
    with catalog.session() as s:
        assert s.get(Clip, ids[0]).status == "accepted"
        assert adjudication.disagreements(s) == []
        settled = adjudication.disagreements(s, include_settled=True)
        assert settled[0]["adjudicated"] == {"verdict": "accept", "by": "lea", "note": "the speech is the singer's intro"}


def test_roles_leads_see_everyone_annotators_their_own(catalog):
    ids = _seed(catalog, 4)
    a, b = _people(catalog, "ann", "bob")
    with catalog.session() as s:
        review.set_policy(s, overlap=2)
    for c in ids[:2]:
        for who in (a, b):
            with catalog.session() as s:
                review.decide(s, who, c, "accept")
    with catalog.session() as s:
        lead = set_role(s, "bob", LEAD)
        ann = s.get(review.Annotator, a)
        with pytest.raises(LeadsOnly, match="for leads"):
            require_lead(ann, "adjudication")
        require_lead(lead, "adjudication")
        from dvmset.agreement import agreement_report

        rep, figs = agreement_report(s), lead_figures(s)
        mine, my_figs = visible_to(rep, figs, ann)
        all_, all_figs = visible_to(rep, figs, lead)
    assert [p["name"] for p in mine["annotators"]] == ["ann"] and set(my_figs) == {"ann"}
    assert [p["name"] for p in all_["annotators"]] == ["ann", "bob"] and set(all_figs) == {"ann", "bob"}
    assert figs["ann"] == {"listening": None, "gold": None}


def test_listening_time_is_absent_without_the_column_and_read_where_it_exists(catalog):
    """This branch's catalog has no listened_s (the annotator side adds it): no figure, no error; a
    catalog with the column gets the median and total of live verdicts."""
    from sqlalchemy import Column, Float

    ids = _seed(catalog, 3)
    a, = _people(catalog, "ann")
    with catalog.session() as s:
        assert listening_by_annotator(s) == {}
    if "listened_s" in Decision.__table__.c:  # merged with the annotator side: the column is real
        with catalog.session() as s:
            for c, secs in zip(ids, (30.0, 50.0, 70.0), strict=True):
                review.decide(s, a, c, "accept")
                s.execute(Decision.__table__.update().where(Decision.clip_id == c).values(listened_s=secs))
        with catalog.session() as s:
            assert listening_by_annotator(s)["ann"] == {"median_s": 50.0, "total_h": 0.04, "clips": 3}
    else:
        assert Column("listened_s", Float).name == "listened_s"


def test_undo_right_after_a_gold_answer_takes_that_answer_back_then_the_verdict_before(any_catalog):
    catalog = any_catalog  # SQLite and Postgres
    ids = _seed(catalog, 4)
    ann, = _people(catalog, "ann")
    with catalog.session() as s:
        gold.add_gold(s, ids[3], "reject", ["noise"])
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with catalog.session() as s:
        review.decide(s, ann, ids[0], "accept", now=t)
    with catalog.session() as s:
        review.decide(s, ann, ids[3], "accept", now=t + dt.timedelta(seconds=30))  # the gold clip, wrongly
    with catalog.session() as s:
        row = review.undo_last(s, ann, now=t + dt.timedelta(seconds=31))
        assert row.clip_id == ids[3]
    with catalog.session() as s:
        assert gold.accuracy_by_annotator(s) == {}  # the undone answer is not scored
        assert review.claim_next(s, ann, now=t + dt.timedelta(seconds=32)) == ids[3]  # handed back first
    with catalog.session() as s:
        review.decide(s, ann, ids[3], "reject", ["noise"], now=t + dt.timedelta(seconds=40))
    with catalog.session() as s:
        acc = gold.accuracy_by_annotator(s)["ann"]
        assert (acc.answered, acc.correct) == (1, 1)
    with catalog.session() as s:
        review.undo_last(s, ann, now=t + dt.timedelta(seconds=41))  # the gold answer again
    with catalog.session() as s:
        row = review.undo_last(s, ann, now=t + dt.timedelta(seconds=42))  # then the verdict before it
        assert row.clip_id == ids[0] and row.voids is not None
    with catalog.session() as s:
        assert s.get(Clip, ids[0]).status == "pending_review" and s.get(Clip, ids[3]).status == "rejected"


def test_an_adjudicated_clip_keeps_the_leads_verdict_when_a_voter_undoes(catalog):
    ids = _seed(catalog, 1)
    a, b, lead = _people(catalog, "ann", "bob", "lea")
    with catalog.session() as s:
        review.set_policy(s, overlap=2)
    with catalog.session() as s:
        review.decide(s, a, ids[0], "accept")
        review.decide(s, b, ids[0], "reject", ["noise"])
    with catalog.session() as s:
        adjudication.adjudicate(s, lead, ids[0], "accept")
    with catalog.session() as s:
        review.undo_last(s, b)
    with catalog.session() as s:
        assert s.get(Clip, ids[0]).status == "accepted"


def test_spans_stored_with_a_verdict_are_read_in_either_shape_and_bad_ones_skipped():
    class Row:  # a decision of a catalog that stores spans (the annotator side's revision)
        spans = [{"start_s": 50, "end_s": 55, "reason": "non_music"}, [10, 12.5], ["x", 3], None]

    assert adjudication.spans_of(Row()) == [{"start_s": 50.0, "end_s": 55.0, "reason": "non_music"},
                                            {"start_s": 10.0, "end_s": 12.5, "reason": None}]
    assert adjudication.spans_of(object()) == []
