"""Routing diagnostics: how evenly the router spreads tokens over experts, which experts
serve the same tokens, and which experts are dead or collapsed.

Pure functions on arrays (numpy or torch); no file I/O and no plotting. The verdicts on the
inflection live in `moe_core.analysis.inflection`, `moe_core.analysis.effects` and
`moe_core.analysis.verdicts`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from moe_core.errors import UserInputError

# ---------------------------------------------------------------------------------------
# Routing statistics
# ---------------------------------------------------------------------------------------


def _to_numpy(values: Any) -> np.ndarray:
    """numpy float64 view of a numpy array or a torch tensor (any device)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def max_violation(tokens_per_expert: Any) -> float | np.ndarray:
    """Load of the busiest expert over the mean load, minus 1 (0 = perfect balance).

    tokens_per_expert: (..., E) counts or shares; returns a float for (E,), else (...,).
    NaN where no token was routed.
    """
    load = _to_numpy(tokens_per_expert)
    mean = load.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        violation = np.where(mean > 0, load.max(axis=-1) / mean - 1.0, np.nan)
    return float(violation) if violation.ndim == 0 else violation


def routing_entropy(expert_load: Any) -> tuple[Any, Any]:
    """Entropy of the load distribution over experts: (nats, fraction of log E).

    expert_load: (..., E) counts, shares or mean router probabilities; 1.0 as a fraction
    means every expert gets the same share, 0.0 that one expert gets everything.
    """
    load = _to_numpy(expert_load)
    total = load.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = load / total
        terms = np.where(share > 0, -share * np.log(share), 0.0)
    nats = np.where(total[..., 0] > 0, terms.sum(axis=-1), np.nan)
    num_experts = load.shape[-1]
    fraction = nats / math.log(num_experts) if num_experts > 1 else np.full_like(nats, np.nan)
    if nats.ndim == 0:
        return float(nats), float(fraction)
    return nats, fraction


def coselection_matrix(topk_indices: Any, num_experts: int) -> np.ndarray:
    """How often experts i and j serve the same token, per token: (E, E), symmetric.

    topk_indices: (..., k) ints, the experts chosen for each token. The diagonal is the
    share of tokens routed to expert i; entry (i, j) the share routed to both i and j.
    """
    indices = _to_numpy(topk_indices).astype(np.int64)
    if indices.ndim < 1:
        raise UserInputError("topk_indices must have a last dimension of size k")
    indices = indices.reshape(-1, indices.shape[-1]) if indices.ndim > 1 else indices[:, None]
    if indices.size and (indices.min() < 0 or indices.max() >= num_experts):
        raise UserInputError(
            f"topk_indices hold expert {int(indices.min())}..{int(indices.max())}, "
            f"outside 0..{num_experts - 1}"
        )
    chosen = np.zeros((indices.shape[0], num_experts))
    np.put_along_axis(chosen, indices, 1.0, axis=1)
    return chosen.T @ chosen / max(indices.shape[0], 1)


def expert_warnings(tokens_per_expert: Any) -> list[str]:
    """Warnings for dead experts (no tokens) and collapsed ones (share below 1/(4E)).

    tokens_per_expert: (E,) for one layer or (layers, E).
    """
    load = _to_numpy(tokens_per_expert)
    if load.ndim not in (1, 2):
        raise UserInputError(f"tokens_per_expert must be (E,) or (layers, E), got {load.shape}")
    per_layer = load[None] if load.ndim == 1 else load
    num_experts = per_layer.shape[-1]
    floor = 1.0 / (4 * num_experts)
    warnings = []
    for layer, counts in enumerate(per_layer):
        total = counts.sum()
        where = f"layer {layer} " if load.ndim == 2 else ""
        if total <= 0:
            warnings.append(f"{where}no tokens routed to any expert")
            continue
        for expert, count in enumerate(counts):
            share = count / total
            if count == 0:
                warnings.append(f"{where}expert {expert}: dead (no tokens routed to it)")
            elif share < floor:
                warnings.append(
                    f"{where}expert {expert}: collapsed ({100 * share:.2f}% of tokens, "
                    f"below 1/(4E) = {100 * floor:.2f}%)"
                )
    return warnings
