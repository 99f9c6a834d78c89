"""KL divergence on classifier outputs and cosine scores on embeddings, per pair.

KL follows audioldm_eval / av-benchmark: softmax over the 527 PANNs AudioSet logits of each
clip, KL(real‖generated) per pair of the same clip id, averaged over pairs. The reverse
direction is reported beside it. Log-probabilities come from a log-softmax, so the value is
exact where a probability underflows (audioldm_eval adds 1e-6 before the log instead).
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``logits`` [N, K] (float64); a constant added to a row changes nothing."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("logits hold NaN or infinite values")
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def kl_per_pair(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(softmax(p_i) ‖ softmax(q_i)) for each row pair i: [N] nats, each ≥ 0."""
    log_p, log_q = log_softmax(p_logits), log_softmax(q_logits)
    if log_p.shape != log_q.shape:
        raise ValueError(f"paired logits must have one shape, got {log_p.shape} and {log_q.shape}")
    values = (np.exp(log_p) * (log_p - log_q)).sum(axis=1)  # [N]
    return np.clip(values, 0.0, None)


AUDIOLDM_EVAL_KL_EPS = 1e-6  # audioldm_eval metrics/kl.py:50, added to the probabilities before the log


def kl_per_pair_audioldm_eval(p_logits: np.ndarray, q_logits: np.ndarray, eps: float = AUDIOLDM_EVAL_KL_EPS) -> np.ndarray:
    """audioldm_eval's KL per pair: Σ p (log p − log(q + eps)), p = softmax(p_i), q = softmax(q_i): [N].

    Its ``kl_div((features_1.softmax(1) + EPS).log(), features_2.softmax(1), reduction="sum") / N``
    (metrics/kl.py:95-99) is the mean of these with p the real clip and q the generated one. The
    eps makes it smaller than the exact KL by Σ p log(1 + eps/q), which grows where q is tiny.
    """
    log_p, log_q = log_softmax(p_logits), log_softmax(q_logits)
    if log_p.shape != log_q.shape:
        raise ValueError(f"paired logits must have one shape, got {log_p.shape} and {log_q.shape}")
    p = np.exp(log_p)
    return (p * (log_p - np.log(np.exp(log_q) + eps))).sum(axis=1)


def cosine_per_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_i) along the embedding axis for each row pair: [N] in [−1, 1]."""
    x, y = _unit_rows(a), _unit_rows(b)
    if x.shape != y.shape:
        raise ValueError(f"paired embeddings must have one shape, got {x.shape} and {y.shape}")
    return np.clip((x * y).sum(axis=1), -1.0, 1.0)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_j) for every i, j: [N, M]; its diagonal is :func:`cosine_per_pair`."""
    return np.clip(_unit_rows(a) @ _unit_rows(b).T, -1.0, 1.0)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if not np.isfinite(v).all() or (norms == 0).any():
        raise ValueError("an embedding is zero, NaN or infinite: its cosine is undefined")
    return v / norms


def inception_score(logits: np.ndarray, *, splits: int = 10, seed: int = 2020, shuffle: bool = True) -> tuple[float, float]:
    """Inception score of classifier logits [N, K] as audioldm_eval computes it: (mean, std) over splits.

    audioldm_eval metrics/isc.py:5-32 (av-benchmark calls it with splits=10, rng_seed=2020,
    samples_shuffle=True): rows permuted by ``RandomState(seed)``, cut into ``splits`` chunks, and per
    chunk exp(mean_i KL(p_i ‖ mean_j p_j)); the std is numpy's (ddof 0). Needs N ≥ splits.
    """
    log_p = log_softmax(logits)
    n = log_p.shape[0]
    if n < splits:
        raise ValueError(f"the inception score needs at least {splits} items (one per split), got {n}")
    if shuffle:
        log_p = log_p[np.random.RandomState(seed).permutation(n)]
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(axis=0, keepdims=True)
        scores.append(float(np.exp((p[lo:hi] * (log_p[lo:hi] - np.log(q))).sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))
