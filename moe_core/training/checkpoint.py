"""Checkpoints: everything a run needs to continue exactly where it stopped, written
atomically and read back with torch's weights_only loader (tensors and plain data only).

Only a run that can still resume needs its checkpoint (the weights, Muon's one state per
matrix and AdamW's two per embedding or norm weight, pending gradients: 2.2x the weights at
the paper preset, 3.2x mid-accumulation), so a finished run's is removed; it keeps its final
weights (weights.pt) only when asked (keep_weights), and best.pt (save_best_checkpoint) always.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from moe_core.errors import UserInputError

CHECKPOINT_FILE = "checkpoint.pt"
BEST_CHECKPOINT_FILE = "best.pt"
WEIGHTS_FILE = "weights.pt"


def save_atomic(path: Path, obj: Any) -> None:
    """torch.save to a temporary sibling, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, config_hash: str, seed: int, model: torch.nn.Module,
                    optimizers: list, scaler: torch.amp.GradScaler, state: dict,
                    since_eval: dict) -> None:
    """The model, optimizers, scaler, pending gradients, RNG states, the run's state and its
    running sums since the last eval (so a checkpoint between evals resumes exactly)."""
    save_atomic(path, {
        "config_hash": config_hash,
        "seed": seed,
        "model": model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt, _ in optimizers},
        "scaler": scaler.state_dict(),
        # gradients pending mid-accumulation, so an eval between updates resumes exactly
        "grads": [p.grad for p in model.parameters()],
        "aux_free_load": [m.load_since_update for m in model.moe_layers],
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "state": state,
        "since_eval": since_eval,
    })


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """The model's state_dict alone, on the CPU (loadable without a GPU), written atomically:
    `model.load_state_dict(torch.load(path, weights_only=True))`."""
    save_atomic(path, {name: t.cpu() for name, t in model.state_dict().items()})


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint's contents, unpickled with torch's weights_only loader: tensors and plain
    data only, so a file placed in a (shared) run folder cannot run code when a run resumes.
    Anything else is a UserInputError, and the run is not resumed from it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # UnpicklingError for a foreign object; others for a broken file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(
            f"{path} cannot be loaded as a checkpoint of this project ({type(e).__name__}: "
            f"{first[:200]}); it is not resumed from. If you trust it, it was not written by "
            "moe_core; otherwise delete it (and metrics.json) to train the run from the start"
        ) from None


def restore(ckpt: dict, model: torch.nn.Module, optimizers: list,
            scaler: torch.amp.GradScaler) -> tuple[dict, dict | None]:
    """Load a checkpoint into the model, optimizers and scaler and set the RNG states;
    returns (the run's state, its running sums since the last eval or None)."""
    model.load_state_dict(ckpt["model"])
    for name, opt, _ in optimizers:
        opt.load_state_dict(ckpt["optimizers"][name])
    scaler.load_state_dict(ckpt["scaler"])
    for p, g in zip(model.parameters(), ckpt["grads"], strict=True):
        p.grad = g
    for m, load in zip(model.moe_layers, ckpt["aux_free_load"], strict=True):
        m.load_since_update.copy_(load)
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt["rng_cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    return ckpt["state"], ckpt.get("since_eval")
