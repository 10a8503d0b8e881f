"""Specification of moe_core.training.tensorboard_log: each run writes its evals as
TensorBoard scalars while it trains, read back here with TensorBoard's own reader."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moe_core.config.run_config import build_config
from moe_core.training import tensorboard_log
from moe_core.training.trainer import train

SMOKE = {"max_steps": 16}  # evals at steps 4, 8, 12, 16; checkpoints at 8 and 16


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / tensorboard_log.EVENTS_DIR))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_a_run_writes_its_curves_with_the_values_of_metrics_json(tmp_path):
    cfg = build_config("baseline", "smoke", SMOKE)
    train(cfg, seed=0, out_dir=tmp_path, progress=False)
    evals = json.loads((tmp_path / "metrics.json").read_text())["evals"]
    curves = scalars(tmp_path)
    steps = [e["step"] for e in evals]
    for tag, key in [("loss/train", "train_loss"), ("loss/val", "val_loss"),
                     ("loss/val_se", "val_loss_se"), ("loss/aux", "aux_loss")]:
        assert [s for s, _ in curves[tag]] == steps, tag
        assert [v for _, v in curves[tag]] == pytest.approx([e[key] for e in evals], rel=1e-6)
    for group in ("muon", "adamw"):
        assert [v for _, v in curves[f"lr/{group}"]] == pytest.approx(
            [e["lr"][group] for e in evals], rel=1e-6)
    for name in tensorboard_log.ROUTING_SCALARS:
        assert f"routing/layer0/{name}" in curves
    loads = [curves[f"expert_load/layer0/expert{j}"] for j in range(cfg.num_experts)]
    for i in range(len(steps)):  # shares of the layer's tokens
        assert sum(load[i][1] for load in loads) == pytest.approx(1.0, abs=1e-5)
    band = zip(curves["loss/val_minus_se"], curves["loss/val"], curves["loss/val_plus_se"],
               strict=True)
    assert all(lo < mid < hi for (_, lo), (_, mid), (_, hi) in band)


def test_a_resumed_run_continues_its_curves_without_the_evals_after_its_checkpoint(
        tmp_path, monkeypatch):
    cfg = build_config("baseline", "smoke", SMOKE)
    add_eval = tensorboard_log.LiveCurves.add_eval

    def interrupted_after_step_12(self, record):
        add_eval(self, record)  # step 12 is logged, but the last checkpoint is at step 8
        if record["step"] == 12:
            raise KeyboardInterrupt

    monkeypatch.setattr(tensorboard_log.LiveCurves, "add_eval", interrupted_after_step_12)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, seed=0, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(tensorboard_log.LiveCurves, "add_eval", add_eval)
    train(cfg, seed=0, out_dir=tmp_path, progress=False)
    val = scalars(tmp_path)["loss/val"]
    assert [s for s, _ in val] == [4, 8, 12, 16]
    evals = json.loads((tmp_path / "metrics.json").read_text())["evals"]
    assert [v for _, v in val] == pytest.approx([e["val_loss"] for e in evals], rel=1e-6)


def test_a_rerun_from_scratch_replaces_the_curves(tmp_path):
    cfg = build_config("baseline", "smoke", SMOKE)
    train(cfg, seed=0, out_dir=tmp_path, progress=False)
    train(cfg, seed=0, out_dir=tmp_path, progress=False, force=True)
    assert [s for s, _ in scalars(tmp_path)["loss/val"]] == [4, 8, 12, 16]


def test_a_run_without_a_folder_writes_no_curves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(build_config("baseline", "smoke", {"max_steps": 4}), seed=0, progress=False)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
