"""Bootstrap intervals and shuffled-pair baselines, with a fixed seed so two runs agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

N_BOOTSTRAP = 2000
CI_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = CI_LEVEL

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.low > self.high:
            raise ValueError(f"interval low {self.low} above high {self.high}")


def bootstrap_ci(n_items: int, statistic: Callable[[np.ndarray], float], *, seed: int = 0,
                 n_boot: int = N_BOOTSTRAP, level: float = CI_LEVEL) -> Interval | None:
    """Percentile interval of ``statistic(indices)`` over ``n_boot`` resamples of the item indices.

    ``statistic`` gets an index array [n_items] drawn with replacement, so a metric that pools
    items (FD over a set, recall over all cuts) is resampled at the item level. None below 2 items.
    """
    if n_items < 2:
        return None
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot, dtype=np.float64)
    for i in range(n_boot):
        values[i] = statistic(rng.integers(0, n_items, size=n_items))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(low), float(high), level)


def mean_ci(values: np.ndarray, *, seed: int = 0, n_boot: int = N_BOOTSTRAP) -> Interval | None:
    """Bootstrap interval of the mean of per-item ``values`` [N]."""
    v = np.asarray(values, dtype=np.float64)
    return bootstrap_ci(v.size, lambda idx: float(v[idx].mean()), seed=seed, n_boot=n_boot)


def off_diagonal_mean(matrix: np.ndarray) -> float:
    """Mean of the entries i ≠ j of a square score matrix [N, N].

    This is the exact expectation of the mean score over uniformly random derangements (every
    item paired with another item's partner), i.e. the shuffled-pair baseline without sampling.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"need a square matrix of at least 2 items, got shape {m.shape}")
    n = m.shape[0]
    return float((m.sum() - np.trace(m)) / (n * (n - 1)))
