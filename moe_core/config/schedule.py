"""The learning-rate schedule: the multiplier of the peak LR at each optimizer update.

Pure arithmetic on the config (no torch), so the report and the simulations can compute
the LR a run applied without training it.
"""

from __future__ import annotations

import dataclasses
import math

from moe_core.config.run_config import RunConfig


def lr_factor(update: int, cfg: RunConfig) -> float:
    """Multiplier of the peak LR applied at optimizer update `update` (1-based).

    `updates` horizon: linear warmup over warmup_ratio of the updates, reaching the peak at
    the end of warmup, then the schedule runs to its floor exactly at the last update.
    `reference` horizon reproduces the reference's defect: its scheduler was built for
    max_steps micro-steps but stepped once per update, starting at 0 (ORIGINAL.md defect 2).
    With `lr_drop_at`, the schedule is the one laid out for the preset's run length
    (max_steps / steps_fraction) up to that fraction of its updates, then `lr_drop_to` to
    the end of the run. With `hold_final_lr`, it is the one laid out for the preset's run
    length, and a longer run holds its last LR after it.
    """
    if cfg.lr_drop_at > 0 or cfg.hold_final_lr:
        accum = cfg.grad_accum_steps
        preset_steps = max(accum, round(cfg.max_steps / cfg.steps_fraction / accum) * accum)
        if cfg.lr_drop_at > 0 and update > round(cfg.lr_drop_at * preset_steps / accum):
            return cfg.lr_drop_to
        update = min(update, preset_steps // accum)  # past the preset's run: its last LR
        cfg = dataclasses.replace(cfg, max_steps=preset_steps, lr_drop_at=0.0,
                                  hold_final_lr=False)
    if cfg.lr_horizon == "reference":
        t, total = update - 1, cfg.max_steps  # LambdaLR gives the first update lambda(0) = 0
        warmup = int(cfg.warmup_ratio * cfg.max_steps)
    else:
        t, total = update, cfg.optimizer_updates
        warmup = round(cfg.warmup_ratio * total)
    if cfg.lr_schedule == "constant":
        return 1.0  # the reference's "no schedule": no warmup either
    if t < warmup:
        return t / warmup
    progress = min(1.0, (t - warmup) / max(1, total - warmup))
    floor = cfg.min_lr_ratio
    if cfg.lr_schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.lr_schedule == "linear_decay":
        return floor + (1 - floor) * (1 - progress)
    # step: multiply by gamma at each milestone (a fraction of the post-warmup updates)
    return cfg.lr_step_gamma ** sum(progress >= m for m in cfg.lr_step_milestones)
