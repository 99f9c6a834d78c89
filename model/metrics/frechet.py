"""Fréchet distance between two sets of embeddings (FD on PANNs Cnn14, as in the paper's Table 1).

FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½. The matrix square roots are taken by
symmetric eigendecomposition (negative round-off eigenvalues clipped to 0), not by
``scipy.linalg.sqrtm``, which returns wrong results on some matrices since scipy 1.11.2
(scipy#19415). ``Σ₁^½ Σ₂ Σ₁^½`` is symmetric PSD and has the eigenvalues of ``Σ₁ Σ₂``, so its
trace-square-root is the usual ``tr sqrtm(Σ₁ Σ₂)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# FD's small-sample bias grows like d²/n (two samples of one 64-d Gaussian: ≈44 at n=50, ≈0.4 at
# n=5000); below this many samples per embedding dimension the number is mostly that bias.
SAMPLES_PER_DIM_WARN = 10


@dataclass(frozen=True)
class GaussianStats:
    """Mean [D] and covariance [D, D] of ``n`` embeddings (the unbiased, n − 1 covariance)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self) -> None:
        if self.mu.ndim != 1 or self.sigma.shape != (self.mu.size, self.mu.size):
            raise ValueError(f"mu must be [D] and sigma [D, D], got {self.mu.shape} and {self.sigma.shape}")
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 embeddings, got n={self.n}")

    @property
    def dim(self) -> int:
        return int(self.mu.size)


def gaussian_stats(embeddings: np.ndarray) -> GaussianStats:
    """Fit a Gaussian to ``embeddings`` [N, D] (float64 internally); N < 2 is refused."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"FD needs at least 2 embeddings per set, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings hold NaN or infinite values")
    return GaussianStats(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], -1),
                         n=x.shape[0])


def sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"need a square matrix, got shape {a.shape}")
    sym = (a + a.T) / 2.0
    vals, vecs = np.linalg.eigh(sym)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ₁ Σ₂)^½ for symmetric PSD Σ₁, Σ₂, as the eigenvalues of Σ₁^½ Σ₂ Σ₁^½."""
    root1 = sqrtm_psd(sigma1)
    inner = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    vals = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(vals, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """FD between two fitted Gaussians of the same width (≥ 0 up to round-off, clipped at 0)."""
    if a.dim != b.dim:
        raise ValueError(f"embedding widths differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_sqrt_product(a.sigma, b.sigma))
    return max(value, 0.0)


def fd_from_embeddings(generated: np.ndarray, reference: np.ndarray) -> float:
    """FD between two embedding sets [N₁, D] and [N₂, D]."""
    return frechet_distance(gaussian_stats(generated), gaussian_stats(reference))


def split_half_fd(reference: np.ndarray, seed: int = 0) -> float:
    """FD between two random halves of one set: the noise floor FD has at this n and d.

    Two samples of one distribution score this much by chance alone; a generated-vs-real FD near
    it says nothing about the generated music. Needs at least 4 embeddings (2 per half).
    """
    x = np.asarray(reference, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"the split-half noise floor needs at least 4 embeddings, got shape {x.shape}")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    half = x.shape[0] // 2
    return fd_from_embeddings(x[order[:half]], x[order[half: 2 * half]])


def sample_size_warning(n: int, dim: int) -> str | None:
    """A sentence when ``n`` embeddings are far too few for a ``dim``-wide covariance, else None."""
    if n >= SAMPLES_PER_DIM_WARN * dim:
        return None
    return (f"n={n} embeddings for a {dim}-d covariance (fewer than {SAMPLES_PER_DIM_WARN}×{dim}): FD is "
            f"dominated by its small-sample bias; compare it with the real-vs-real split-half FD")


def project_to_span(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in an orthonormal basis of the span of all their rows: [N₁, r] and [N₂, r], r ≤ N₁ + N₂.

    Means, covariances and FD are unchanged (FD is invariant to rotations, and nothing lies outside
    the rows' span), so a 2048-d FD of a few hundred clips costs eigendecompositions of r × r, and
    so does every bootstrap resample. Returns the inputs unchanged when r would not be smaller.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need [N, D] sets of one width, got {x.shape} and {y.shape}")
    rows = np.concatenate([x, y])
    if rows.shape[0] >= rows.shape[1]:
        return x, y
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    basis = vt[s > s.max() * 1e-12].T if s.size and s.max() > 0 else vt.T  # [D, r]
    return x @ basis, y @ basis


@dataclass(frozen=True)
class FadInf:
    """fadtk's FAD∞: the intercept of FAD against 1/n, with its slope, R² and the (n, FAD) points."""

    score: float
    slope: float
    r2: float
    points: list[tuple[int, float]]


def fad_inf(eval_frames: np.ndarray, reference: GaussianStats, *, steps: int = 25, min_n: int = 500,
            seed: int = 0) -> FadInf:
    """FAD∞ as fadtk computes it (fadtk 1.1.0 fad.py:304-351, ``score_inf``).

    For n in ``int(linspace(min_n, N, steps))`` draw n of the N evaluated frames **with replacement**
    (``np.random.choice``; here a ``RandomState(seed)``, the stream ``np.random.seed(seed)`` gives),
    take their FD to the reference statistics, and fit FAD = slope / n + FAD∞ by least squares.
    """
    x = np.asarray(eval_frames, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < min_n:
        raise ValueError(f"FAD∞ needs at least min_n={min_n} frames, got {x.shape[0] if x.ndim == 2 else x.shape}")
    rng = np.random.RandomState(seed)
    ns = [int(n) for n in np.linspace(min_n, x.shape[0], steps)]
    points = []
    for n in ns:
        idx = rng.choice(x.shape[0], size=n, replace=True)
        points.append((n, frechet_distance(gaussian_stats(x[idx]), reference)))
    xs, ys = 1.0 / np.array(ns, dtype=np.float64), np.array([p[1] for p in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    r2 = 1.0 - np.sum((ys - (slope * xs + intercept)) ** 2) / np.sum((ys - ys.mean()) ** 2)
    return FadInf(float(intercept), float(slope), float(r2), points)
