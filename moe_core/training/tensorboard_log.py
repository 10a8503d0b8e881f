"""Live curves: every eval of a run as TensorBoard scalars in <run folder>/tensorboard, so that
`tensorboard --logdir runs/<suite>` shows a whole sweep while it trains.

Tags (x axis: the micro-step, as metrics.json's `step`): loss/train, loss/val, loss/val_se
(and loss/val_minus_se, loss/val_plus_se for the band in the Custom Scalars tab),
loss/train_subset, loss/aux, accuracy/val, lr/<optimizer group>, optim/grad_norm,
speed/tokens_per_s, routing/layer<i>/<statistic>, expert_load/layer<i>/expert<j> (share of
the layer's tokens; 1/E is perfect balance).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from moe_core.config.run_config import RunConfig

EVENTS_DIR = "tensorboard"

# scalar tag -> the eval record's field
RECORD_SCALARS = {
    "loss/train": "train_loss",
    "loss/val": "val_loss",
    "loss/val_se": "val_loss_se",
    "loss/train_subset": "train_subset_loss",
    "loss/aux": "aux_loss",
    "accuracy/val": "val_accuracy",
    "optim/grad_norm": "grad_norm",
    "speed/tokens_per_s": "tokens_per_s",
}
ROUTING_SCALARS = ("balance_loss", "z_loss", "router_entropy", "max_violation")


def _layout(n_layers: int) -> dict:
    """The Custom Scalars tab: train and val on one chart, val with its SE band, the LR of
    every group together, each layer's expert loads together."""
    return {
        "loss": {
            "train, train subset and val": ["Multiline", ["^loss/train$", "^loss/train_subset$",
                                                          "^loss/val$"]],
            "val ± 1 SE": ["Margin", ["loss/val", "loss/val_minus_se", "loss/val_plus_se"]],
        },
        "learning rate": {"every group": ["Multiline", ["^lr/"]]},
        "expert load": {f"layer {i}": ["Multiline", [f"^expert_load/layer{i}/"]]
                        for i in range(n_layers)},
    }


class LiveCurves:
    """Writes a run's evals as TensorBoard scalars; a run that starts from scratch replaces
    the folder's curves, a resumed one drops what was logged after its checkpoint."""

    def __init__(self, run_dir: str | Path, resume_step: int, cfg: RunConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(run_dir) / EVENTS_DIR
        if resume_step == 0:
            shutil.rmtree(log_dir, ignore_errors=True)
        # purge_step: TensorBoard hides events at or after it from earlier files (the evals
        # the interrupted run logged after its last checkpoint)
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step + 1 if resume_step
                                    else None)
        if resume_step == 0:
            self.writer.add_custom_scalars(_layout(cfg.n_layers))
            self.writer.add_text("config", "```\n" + json.dumps(cfg.to_dict(), indent=1) + "\n```")

    def add_eval(self, record: dict[str, Any]) -> None:
        """One eval record of metrics.json (a field it lacks, or None, is left out)."""
        step = record["step"]
        scalars = {tag: record.get(key) for tag, key in RECORD_SCALARS.items()}
        if record.get("val_loss") is not None and record.get("val_loss_se") is not None:
            scalars["loss/val_minus_se"] = record["val_loss"] - record["val_loss_se"]
            scalars["loss/val_plus_se"] = record["val_loss"] + record["val_loss_se"]
        for group, lr in (record.get("lr") or {}).items():
            scalars[f"lr/{group}"] = lr
        for i, layer in enumerate(record.get("routing") or []):
            for name in ROUTING_SCALARS:
                scalars[f"routing/layer{i}/{name}"] = layer.get(name)
            load = layer.get("tokens_per_expert") or []
            total = sum(load)
            for j, tokens in enumerate(load):
                scalars[f"expert_load/layer{i}/expert{j}"] = tokens / total if total else None
        for tag, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # visible to a TensorBoard watching the sweep now, not in 2 min

    def close(self) -> None:
        self.writer.close()
