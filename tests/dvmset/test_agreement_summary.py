"""The agreement summary kept in the catalog (dvmset.agreement_summary) equals the report computed from
scratch after every round of a mixed sequence: new verdicts, second verdicts that replace the first, undos of
verdicts counted in an earlier round, new annotators; and a report with nothing new counts nothing."""

from __future__ import annotations

import numpy as np

from dvmset import agreement_summary
from dvmset.agreement import agreement_from_rows, agreement_report, load_decision_rows
from dvmset.records import RejectReason
from dvmset.tables import Annotator, Clip, Decision, Source

REASONS = [r.value for r in RejectReason]


def _round(s, rng: np.random.Generator, clips: list[str], annotators: list[int]) -> int:  # noqa: ANN001
    """One round of decisions on random clips (some already decided: changes), with undos of random
    verdicts in force, earlier rounds' included. Returns the rows added."""
    added = 0
    for c in rng.choice(clips, size=25, replace=False).tolist():
        for a in rng.choice(annotators, size=int(rng.integers(1, min(4, len(annotators)) + 1)), replace=False):
            v = "accept" if rng.random() < 0.6 else "reject"
            s.add(Decision(clip_id=c, annotator_id=int(a), verdict=v,
                           reasons=sorted(rng.choice(REASONS, size=int(rng.integers(1, 3)), replace=False).tolist())
                           if v == "reject" else [],
                           seconds_spent=None if rng.random() < 0.1 else float(rng.integers(0, 90))))
            added += 1
    s.flush()
    live = [d for d in s.query(Decision).filter(Decision.verdict != "undo")
            if not s.query(Decision).filter(Decision.voids == d.id).count()]
    for d in rng.choice(live, size=min(6, len(live)), replace=False):
        s.add(Decision(clip_id=d.clip_id, annotator_id=d.annotator_id, verdict="undo", voids=d.id))
        added += 1
    return added


def test_the_kept_summary_equals_the_report_from_scratch_after_every_round(any_catalog):
    rng = np.random.default_rng(11)
    clips = [f"v-{i:05d}" for i in range(60)]
    with any_catalog.session() as s:
        s.add(Source(id="v", url="u", status="done", query="q"))
        s.flush()
        s.add_all(Clip(id=c, source_id="v", start_s=0, duration_s=60, status="pending_review") for c in clips)
        s.add_all(Annotator(name=f"a{k}", token_hash=f"h{k}") for k in range(6))
    with any_catalog.session() as s:
        ids = sorted(s.scalars(Annotator.__table__.select().with_only_columns(Annotator.id)))
    for k in range(6):
        annotators = ids[: 3 + k // 2]  # annotators join as the rounds go
        with any_catalog.session() as s:
            added = _round(s, rng, clips, annotators)
        with any_catalog.session() as s:
            assert agreement_summary.catch_up(s) == added  # only this round's rows are counted
        with any_catalog.session() as s:
            kept = agreement_summary.agreement_report(s)
            names = {a.id: a.name for a in s.query(Annotator)}
            assert kept == agreement_report(s) == agreement_from_rows(load_decision_rows(s), names), f"round {k}"
    assert kept["clips_multi_rated"] > 20 and any(p["undone"] for p in kept["annotators"])
    with any_catalog.session() as s:
        assert agreement_summary.catch_up(s) == 0


def test_the_first_report_counts_a_catalog_from_before_the_summary(any_catalog):
    """Decisions written before revision 0010 (or by any writer) start unsummarised: the first report counts
    them all, in batches of clips (more than a batch: paged through a temporary table, on both databases)."""
    catalog = any_catalog
    with catalog.session() as s:
        s.add(Source(id="v", url="u", status="done", query="q"))
        s.flush()
        s.add_all(Clip(id=f"v-{i:05d}", source_id="v", start_s=0, duration_s=60, status="pending_review")
                  for i in range(30))
        s.add_all(Annotator(name=n, token_hash=f"h{n}") for n in ("ann", "bob"))
        s.flush()
        for i in range(30):
            for a, v in ((1, "accept"), (2, "accept" if i % 3 else "reject")):
                s.add(Decision(clip_id=f"v-{i:05d}", annotator_id=a, verdict=v, seconds_spent=10.0 + i,
                               reasons=[] if v == "accept" else ["noise"]))
    old = agreement_summary.CLIPS_PER_BATCH
    agreement_summary.CLIPS_PER_BATCH = 7  # several batches
    try:
        with catalog.session() as s:
            kept = agreement_summary.agreement_report(s)
    finally:
        agreement_summary.CLIPS_PER_BATCH = old
    with catalog.session() as s:
        assert kept == agreement_report(s)
    assert kept["overall"]["pairs"][0]["items"] == 30 and kept["annotators"][0]["median_seconds"] == 24.5
