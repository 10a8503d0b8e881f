"""What the report tests share: tiny finished runs, a diverged one and a corrupted file."""

from pathlib import Path

import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.training.trainer import train

TINY = {"max_steps": 8}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """Tiny finished runs (baseline and no_lb under both schedules, two seeds), a diverged
    run and a corrupted file."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 25k-parameter model trains fastest on one thread
    for experiment in ("baseline", "no_lb"):
        for condition in ("", "reference_lr"):
            cfg = build_config(experiment, "smoke", TINY, condition=condition)
            for seed in (0, 1):
                train(cfg, seed=seed, out_dir=root / cfg.arm / f"seed{seed}", progress=False)
    train(build_config("constant_lr", "smoke", {**TINY, "fault_nan_at_step": 2}), seed=0,
          out_dir=root / "constant_lr" / "seed0", progress=False)
    broken = root / "higher_dropout" / "seed0"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"status": "runn')
    torch.set_num_threads(threads)
    return root
