"""Agreement statistics and the effective-verdict rule, against textbook values and the catalog."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dvmset.agreement import (
    DecisionRow,
    agreement_report,
    cohen_kappa,
    effective_verdict,
    fleiss_kappa,
    live_verdicts,
)
from dvmset.tables import Annotator, Clip, Decision, Source

# Wikipedia's Fleiss example: 10 items, 14 raters, 5 categories, kappa = 0.210.
FLEISS_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


def test_cohen_textbook_value():
    # 50 items: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> p_o 0.7, p_e 0.5, kappa 0.4.
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(b, a) == pytest.approx(0.4)  # symmetric


def test_cohen_extremes():
    a = ["acc", "rej", "acc", "rej"]
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    flipped = ["rej" if x == "acc" else "acc" for x in a]
    assert cohen_kappa(a, flipped) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(["acc"] * 3, ["acc"] * 3))  # chance agreement 1: undefined
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="no items"):
        cohen_kappa([], [])


def test_fleiss_textbook_value_and_invariants():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.20993, abs=1e-4)
    # Renaming categories (column order) or reordering items changes nothing.
    assert fleiss_kappa(FLEISS_TABLE[::-1, ::-1]) == pytest.approx(fleiss_kappa(FLEISS_TABLE))
    # Full agreement on varied categories is 1.
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa(np.array([[3, 0], [3, 0]])))
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[2, 0], [1, 2]]))
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[1, 0]]))


def test_fleiss_with_two_raters_is_scotts_pi():
    a = ["y", "y", "n", "n", "y", "n", "y", "y"]
    b = ["y", "n", "n", "n", "y", "y", "y", "y"]
    counts = np.array([[x == "y", x == "n"] for x in a], dtype=int) + np.array([[x == "y", x == "n"] for x in b], dtype=int)
    p_o = np.mean([x == y for x, y in zip(a, b, strict=True)])
    p_y = (a.count("y") + b.count("y")) / 16
    scott = (p_o - (p_y**2 + (1 - p_y) ** 2)) / (1 - (p_y**2 + (1 - p_y) ** 2))
    assert fleiss_kappa(counts) == pytest.approx(scott)


def test_effective_verdict_rule():
    assert effective_verdict([], 1) is None
    assert effective_verdict(["accept"], 1) == "accept"
    assert effective_verdict(["reject"], 1) == "reject"
    assert effective_verdict(["accept"], 2) is None
    assert effective_verdict(["accept", "reject"], 2) == "reject"  # tie rejects
    assert effective_verdict(["accept", "accept", "reject"], 3) == "accept"
    assert effective_verdict(["accept", "reject", "reject"], 3) == "reject"
    with pytest.raises(ValueError):
        effective_verdict(["maybe"], 1)
    with pytest.raises(ValueError):
        effective_verdict(["accept"], 0)


def test_live_verdicts_apply_undo_and_keep_latest():
    rows = [
        DecisionRow(1, "c1", 1, "accept"),
        DecisionRow(2, "c1", 1, "undo", voids=1),
        DecisionRow(3, "c1", 1, "reject", ("noise",)),
        DecisionRow(4, "c2", 2, "accept"),
        DecisionRow(5, "c2", 2, "undo", voids=4),
    ]
    live = live_verdicts(rows)
    assert set(live) == {"c1"}
    assert live["c1"][1].id == 3
    with pytest.raises(ValueError, match="must name"):
        DecisionRow(6, "c1", 1, "undo")


def test_agreement_report_from_catalog(catalog):
    with catalog.session() as s:
        s.add(Source(id="v", url="u", status="done", query="q"))
        s.flush()  # no ORM relationships: flush parents before children
        for i in range(6):
            s.add(Clip(id=f"v-{i:05d}", source_id="v", start_s=0, duration_s=60, status="pending_review"))
        ann = [Annotator(name=n, token_hash=f"h{n}") for n in ("ann", "bob", "cyd")]
        s.flush()
        s.add_all(ann)
        s.flush()
        a, b, c = (x.id for x in ann)
        # ann and bob: 6 shared clips; they disagree on clip 5 only. cyd rates clips 0-1 and undoes one.
        va = ["accept", "accept", "reject", "reject", "accept", "accept"]
        vb = ["accept", "accept", "reject", "reject", "accept", "reject"]
        for i, (x, y) in enumerate(zip(va, vb, strict=True)):
            s.add(Decision(clip_id=f"v-{i:05d}", annotator_id=a, verdict=x, seconds_spent=10.0,
                           reasons=["noise"] if x == "reject" else []))
            s.add(Decision(clip_id=f"v-{i:05d}", annotator_id=b, verdict=y, seconds_spent=20.0,
                           reasons=["static"] if y == "reject" else []))
        s.add(Decision(clip_id="v-00000", annotator_id=c, verdict="accept", seconds_spent=5.0))
        d = Decision(clip_id="v-00001", annotator_id=c, verdict="reject", reasons=["other"], note="x")
        s.add(d)
        s.flush()
        s.add(Decision(clip_id="v-00001", annotator_id=c, verdict="undo", voids=d.id))
    with catalog.session() as s:
        rep = agreement_report(s)
    assert rep["clips_rated"] == 6 and rep["clips_multi_rated"] == 6
    pairs = {(p["a"], p["b"]): p for p in rep["overall"]["pairs"]}
    assert pairs[("ann", "bob")]["items"] == 6
    assert pairs[("ann", "bob")]["kappa"] == pytest.approx(cohen_kappa(va, vb), abs=1e-4)
    assert pairs[("ann", "cyd")]["items"] == 1  # the undone verdict does not count
    # 'noise' is only ever used by ann, 'static' only by bob: no agreement on the reason.
    noise = {(p["a"], p["b"]): p for p in rep["per_reason"]["noise"]["pairs"]}
    assert noise[("ann", "bob")]["kappa"] == pytest.approx(
        cohen_kappa(["yes" if v == "reject" else "no" for v in va], ["no"] * 6), abs=1e-4)
    assert rep["overall"]["fleiss"]["raters_per_item"] == 2 and rep["overall"]["fleiss"]["items"] == 6
    people = {p["name"]: p for p in rep["annotators"]}
    assert people["ann"]["decisions"] == 6 and people["ann"]["clips_per_hour"] == pytest.approx(360.0)
    assert people["bob"]["median_seconds"] == pytest.approx(20.0)
    assert people["cyd"]["decisions"] == 1 and people["cyd"]["undone"] == 1


def test_agreement_report_by_sql_equals_the_rule_applied_to_every_row(any_catalog):
    """The SQL aggregates give what agreement_from_rows gives on every decision row, on a random catalog
    with overlap 1-4, undos, re-decisions, several reasons, untimed decisions and an idle annotator."""
    from dvmset.agreement import agreement_from_rows, load_decision_rows
    from dvmset.records import RejectReason

    rng = np.random.default_rng(7)
    reasons = [r.value for r in RejectReason]
    with any_catalog.session() as s:
        s.add(Source(id="v", url="u", status="done", query="q"))
        s.flush()
        for i in range(120):
            s.add(Clip(id=f"v-{i:05d}", source_id="v", start_s=0, duration_s=60, status="pending_review"))
        ann = [Annotator(name=f"a{k}", token_hash=f"h{k}") for k in range(7)]
        s.add_all(ann)
        s.flush()
        for i in range(120):
            for a in rng.choice(ann[:6], size=int(rng.integers(1, 5)), replace=False):
                for _ in range(int(rng.integers(1, 3))):  # sometimes decided twice: the later one counts
                    v = "accept" if rng.random() < 0.6 else "reject"
                    d = Decision(clip_id=f"v-{i:05d}", annotator_id=a.id, verdict=v,
                                 reasons=sorted(rng.choice(reasons, size=int(rng.integers(1, 3)), replace=False).tolist())
                                 if v == "reject" else [],
                                 seconds_spent=None if rng.random() < 0.1 else float(rng.integers(0, 90)))
                    s.add(d)
                    s.flush()
                    if rng.random() < 0.15:
                        s.add(Decision(clip_id=d.clip_id, annotator_id=a.id, verdict="undo", voids=d.id))
    with any_catalog.session() as s:
        got = agreement_report(s)
        names = {a.id: a.name for a in s.query(Annotator)}
        want = agreement_from_rows(load_decision_rows(s), names)
    assert got["clips_multi_rated"] > 40 and got["overall"]["fleiss"]["items"] > 20
    assert got == want
