"""The paper's rhythm feature as pure maths: Eq. 4 (patch-token similarity) and Algorithm 1.

Eq. 4:  sim_i = 1/K * sum_j cos(r_i^j, r_{i+1}^j)  over the K patch tokens of frames i and i+1.
Alg. 1: sim <- [1] + sim;  dis <- [1 - s for s in sim];  d <- sum([[x, 0] for x in dis], [])
so d[2k] = 1 - sim(frame k-1, frame k) (d[0] = 0) and every odd index is 0: 25 fps -> 50 Hz.
"""

from __future__ import annotations

import numpy as np
import torch


def unit_tokens(tokens: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Patch tokens scaled to unit length (float32), so Eq. 4 becomes a mean of dot products."""
    tokens = tokens.float()  # [N, K, C]
    return tokens / tokens.norm(dim=-1, keepdim=True).clamp_min(eps)


def pairwise_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for frame pairs: mean over patches of cos(a^j, b^j); a, b: [N, K, C] -> [N]."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"expected two [N, K, C] token tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    return (unit_tokens(a) * unit_tokens(b)).sum(dim=-1).mean(dim=-1)  # [N]


def frame_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """Eq. 4 over a sequence: similarity of each frame to the next; [N, K, C] -> [N-1]."""
    if tokens.dim() != 3 or tokens.shape[0] < 1:
        raise ValueError(f"expected [N, K, C] patch tokens with N >= 1, got {tuple(tokens.shape)}")
    return pairwise_similarity(tokens[:-1], tokens[1:])


def distance_sequence(sim: np.ndarray) -> np.ndarray:
    """Algorithm 1: N-1 inter-frame similarities -> 2N distances at 50 Hz (float32)."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 1:
        raise ValueError(f"expected a 1-D similarity sequence, got shape {sim.shape}")
    dis = 1.0 - np.concatenate([[1.0], sim])  # [N]; prepend 1 keeps the frame count
    d = np.zeros(2 * dis.shape[0], dtype=np.float32)  # [2N]
    d[0::2] = dis  # [x, 0] per frame: value first, then the zero
    return d


def rhythm_from_tokens(tokens: torch.Tensor) -> np.ndarray:
    """Eq. 4 then Algorithm 1: [N, K, C] patch tokens at 25 fps -> [2N] distances at 50 Hz."""
    return distance_sequence(frame_similarity(tokens).double().cpu().numpy())
