"""Ordering the review queue by a model of the verdicts so far (``vidmusician review --order``).

A small L2-regularised logistic regression (Newton's method in numpy) on the clips' QC hints
(silence, still seconds, scene cuts, residual vocals, loudness range, limiting) predicts
P(kept) for every pending clip from the clips already decided:

* ``queue``: the plain queue, by clip id (no model).
* ``uncertain``: P(kept) closest to 0.5 first, to learn the boundary fastest.
* ``likely-keep``: the highest P(kept) first, to reach a dataset size in fewer decisions.

Until the decided clips hold ``MIN_PER_CLASS`` keeps and rejects, the model is not fitted and the
queue order stands. Hints curation did not measure are filled with the decided clips' mean (a
missing hint then says nothing either way).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from dvmset.records import ClipStatus
from dvmset.tables import Clip

ORDERS = ("queue", "uncertain", "likely-keep")
FEATURES = ("silence_ratio", "still_s", "scene_cuts", "vocal_energy", "loudness_range_lu", "limiting_db")
MIN_PER_CLASS = 3
L2 = 1.0
RANK_TTL_S = 10.0  # a server re-ranks at most this often (each ranking fits on every decided clip)


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: expected one of {', '.join(ORDERS)}")
    return order


@dataclass(frozen=True)
class KeepModel:
    """Standardisation and weights of a fitted logistic regression on the hints."""

    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    weights: np.ndarray  # [F + 1], the last one the intercept

    def design(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.mean, x)  # [N, F]
        z = (x - self.mean) / self.scale
        return np.hstack([z, np.ones((len(z), 1))])  # [N, F + 1]

    def p_keep(self, x: np.ndarray) -> np.ndarray:
        """P(kept) per row of hints ``x`` [N, F] (NaN: not measured)."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.design(x) @ self.weights, -30, 30)))


def fit(x: np.ndarray, kept: np.ndarray, l2: float = L2, iters: int = 25) -> KeepModel | None:
    """Fit P(kept | hints) on decided clips (``x`` [N, F], ``kept`` [N] of 0/1); None with too few of a class."""
    kept = np.asarray(kept, dtype=np.float64)
    if kept.sum() < MIN_PER_CLASS or (1 - kept).sum() < MIN_PER_CLASS:
        return None
    x = np.asarray(x, dtype=np.float64)
    mean = np.nanmean(np.where(np.isnan(x).all(axis=0), 0.0, x), axis=0)
    mean = np.where(np.isnan(mean), 0.0, mean)
    filled = np.where(np.isnan(x), mean, x)
    scale = filled.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    model = KeepModel(mean, scale, np.zeros(x.shape[1] + 1))
    a = model.design(x)  # [N, F + 1]
    w = model.weights.copy()
    reg = np.full(len(w), l2)
    reg[-1] = 0.0  # the intercept is not shrunk
    for _ in range(iters):  # Newton / IRLS: the problem is convex and small
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))
        grad = a.T @ (p - kept) + reg * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return KeepModel(mean, scale, w)


def rank(order: str, ids: Sequence[str], p_keep: np.ndarray | None) -> list[str]:
    """``ids`` in review order; ties (and no model) keep the queue's id order."""
    check_order(order)
    base = sorted(range(len(ids)), key=lambda i: ids[i])
    if order == "queue" or p_keep is None:
        return [ids[i] for i in base]
    p = np.asarray(p_keep, dtype=np.float64)
    key = np.abs(p - 0.5) if order == "uncertain" else -p
    stable = np.array(base)[np.argsort(key[base], kind="stable")]
    return [ids[i] for i in stable]


def _hints(rows: Sequence) -> np.ndarray:
    return np.array([[np.nan if v is None else float(v) for v in r] for r in rows], dtype=np.float64).reshape(
        len(rows), len(FEATURES))


def ranked_pending(session: Session, order: str) -> list[str]:
    """Every pending clip's id in ``order``, the model fitted on the clips decided so far."""
    check_order(order)
    cols = [getattr(Clip, f) for f in FEATURES]
    rows = session.execute(select(Clip.id, Clip.status, *cols).where(Clip.status.in_(
        [ClipStatus.PENDING_REVIEW.value, ClipStatus.ACCEPTED.value, ClipStatus.REJECTED.value]))).all()
    pending = [r for r in rows if r[1] == ClipStatus.PENDING_REVIEW]
    ids = [r[0] for r in pending]
    if order == "queue" or not pending:
        return sorted(ids)
    decided = [r for r in rows if r[1] != ClipStatus.PENDING_REVIEW]
    model = fit(_hints([r[2:] for r in decided]), np.array([r[1] == ClipStatus.ACCEPTED for r in decided], float))
    return rank(order, ids, None if model is None else model.p_keep(_hints([r[2:] for r in pending])))


class RankCache:
    """A server's ranking, recomputed at most every ``ttl_s`` (clips decided meanwhile are skipped by
    the queue's own checks; new clips join at the next ranking)."""

    def __init__(self, ttl_s: float = RANK_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._at: dict[tuple[str, str], tuple[float, list[str]]] = {}

    def get(self, session: Session, order: str) -> list[str]:
        key = (session.get_bind().url.render_as_string(hide_password=True), order)
        now = time.monotonic()
        hit = self._at.get(key)
        if hit is None or now - hit[0] > self.ttl_s:
            hit = (now, ranked_pending(session, order))
            self._at[key] = hit
        return hit[1]


RANKINGS = RankCache()
