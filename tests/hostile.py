"""Runs whose names and fields are hostile: what a report built from other people's run
folders may meet. Shared by the escaping test (no browser) and the browser test."""

import json
import shutil
from pathlib import Path

import torch

from moe_core.config.run_config import build_config
from moe_core.training.trainer import train

SCRIPT = "<script>alert('script')</script>"
ONERROR = "<img src=x onerror=alert('onerror')>"
JS_LINK = "[click me](javascript:alert('link'))"
MD_IMAGE = "![secret](/etc/passwd)"
MARKUP = "**bold** | _it_ `code` $x^2$ # h"
FORMULA = '=HYPERLINK("http://example.invalid","x")'
RTL = "abc\u202edcba"  # a right-to-left override: would show "abcabcd"
ZERO_WIDTH = "zero\u200bwidth"
LONG = "L" * 10_000
# folder names hold at most 255 bytes and no "/"; metrics fields hold anything
FOLDER_NAMES = [ONERROR, JS_LINK, SCRIPT.replace("/", "")]
FIELDS = {"condition": f"{SCRIPT}{RTL}", "intervention": f"{ONERROR}{JS_LINK}{ZERO_WIDTH}",
          "description": f"{MD_IMAGE}{MARKUP}{LONG}", "device": FORMULA}
TINY = {"max_steps": 8}


def _rewrite(metrics_file: Path, edit) -> None:
    metrics = json.loads(metrics_file.read_text())
    edit(metrics)
    metrics_file.write_text(json.dumps(metrics))


def _hostile_fields(metrics: dict, intervention: bool) -> None:
    config = metrics["config"]
    config["condition"] = FIELDS["condition"]
    if intervention:
        config["name"] = FIELDS["intervention"]
        metrics["experiment_config"]["name"] = FIELDS["intervention"]
    metrics["experiment_config"]["description"] = FIELDS["description"]
    metrics.setdefault("environment", {})["device_name"] = FIELDS["device"]


def reference_copy(run: Path, folder: Path) -> None:
    """A reference-format metrics.json (the reference framework's fields only) from one of
    our runs, in `folder`."""
    ours = json.loads((run / "metrics.json").read_text())
    keep = ("experiment_config", "final_metrics", "total_time_minutes", "stopped_early",
            "actual_steps", "history")
    history = {k: ours["history"][k] for k in ("steps", "val_losses", "val_accuracies",
                                               "val_perplexities", "elapsed_times",
                                               "learning_rates")}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(
        {**{k: ours[k] for k in keep if k in ours}, "history": history}))


def make_hostile_runs(root: Path) -> tuple[Path, Path]:
    """Our runs (a rising-control design: baseline and no_lb under one condition, 2 seeds)
    whose condition, intervention name, description and device are hostile, a broken run in
    a hostile folder, and reference-format copies in hostile folders. Returns (runs,
    reference folder)."""
    runs, references = root / "runs", root / "reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 25k-parameter model trains fastest on one thread
    try:
        for experiment in ("baseline", "no_lb"):
            cfg = build_config(experiment, "smoke", TINY, condition="reference_lr")
            for seed in (0, 1):
                out = runs / experiment / f"seed{seed}"
                train(cfg, seed=seed, out_dir=out, progress=False)
                _rewrite(out / "metrics.json",
                         lambda m, e=experiment: _hostile_fields(m, e != "baseline"))
    finally:
        torch.set_num_threads(threads)
    for name in FOLDER_NAMES:
        reference_copy(runs / "baseline" / "seed0", references / name)
    broken = runs / FOLDER_NAMES[0] / "seed0"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"status": "runn')
    shutil.rmtree(runs / "baseline" / "seed0" / "tensorboard", ignore_errors=True)
    return runs, references
