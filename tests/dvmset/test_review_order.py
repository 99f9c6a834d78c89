"""Queue order by a model of past verdicts (dvmset.review_order): the fit recovers the hints' direction,
the queue hands clips in the asked order through the real catalog, and the simulated review of
benchmarks/bench_review_order.py needs fewer decisions to reach N kept clips with likely-keep."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dvmset import review, review_order
from dvmset.tables import Clip, Source

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_review_order.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_review_order", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_fit_recovers_which_hints_cost_a_clip():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, len(review_order.FEATURES)))
    true = np.array([-2.0, -1.0, 0.0, 0.0, 0.5, 0.0])
    kept = (x @ true + rng.normal(0, 0.5, 800) > 0).astype(float)
    x[rng.random(x.shape) < 0.05] = np.nan  # hints not measured are filled, not fatal
    model = review_order.fit(x, kept)
    w = model.weights[:-1] * 1.0
    assert w[0] < -1.0 and w[1] < -0.5 and w[4] > 0.2 and abs(w[2]) < 0.3
    acc = ((model.p_keep(x) > 0.5) == (kept > 0.5)).mean()
    assert acc > 0.85
    assert review_order.fit(x[:5], np.array([1, 1, 1, 1, 0.0])) is None  # too few rejects: no model


def test_rank_orders_by_uncertainty_or_keep_and_falls_back_to_the_queue():
    ids = ["c3", "c1", "c2"]
    p = np.array([0.9, 0.1, 0.55])
    assert review_order.rank("queue", ids, p) == ["c1", "c2", "c3"]
    assert review_order.rank("likely-keep", ids, p) == ["c3", "c2", "c1"]
    assert review_order.rank("uncertain", ids, np.array([0.9, 0.2, 0.55])) == ["c2", "c1", "c3"]  # |p - .5|: .4 .3 .05
    assert review_order.rank("likely-keep", ids, None) == ["c1", "c2", "c3"]
    with pytest.raises(ValueError, match="expected one of queue, uncertain, likely-keep"):
        review_order.rank("random", ids, p)


def test_the_queue_hands_clips_in_the_asked_order(catalog):
    """Decided clips: silent ones rejected, the others kept. Pending: the lowest ids are silent, a late one
    is not; likely-keep hands the late one first, the queue the lowest id, uncertain the middling one."""
    with catalog.session() as s:
        s.add(Source(id="v", url="https://example.org/v", status="done"))
        s.flush()
        for i in range(12):  # decided
            s.add(Clip(id=f"a-{i:03d}", source_id="v", start_s=0, duration_s=60, silence_ratio=0.9 if i % 2 else 0.0,
                       status="rejected" if i % 2 else "accepted"))
        for i, sil in enumerate((0.9, 0.85, 0.45, 0.0)):
            s.add(Clip(id=f"p-{i:03d}", source_id="v", start_s=0, duration_s=60, silence_ratio=sil,
                       status="pending_review"))
        a, _ = review.add_annotator(s, "ann")
        b, _ = review.add_annotator(s, "bob")
        c, _ = review.add_annotator(s, "cyd")
        ids = (a.id, b.id, c.id)
    got = {}
    for who, order in zip(ids, ("queue", "likely-keep", "uncertain"), strict=True):
        with catalog.session() as s:
            got[order] = review.claim_next(s, who, order=order)
    assert got == {"queue": "p-000", "likely-keep": "p-003", "uncertain": "p-002"}
    with catalog.session() as s:
        assert review_order.ranked_pending(s, "likely-keep") == ["p-003", "p-002", "p-001", "p-000"]


def test_the_ordering_benchmark_reaches_n_kept_clips_in_fewer_decisions():
    out = _bench().main(["--clips", "800", "--keep", "150", "--seeds", "2", "--rerank", "20", "--probe", "100"])
    queue, keep = out["queue"]["mean_decisions"], out["likely-keep"]["mean_decisions"]
    assert keep < 0.8 * queue  # the model's ranking pays off at this noise
    assert all(150 <= n <= 800 for o in out.values() for n in o["decisions"])
