"""Checkpoints: resumed only for their own config, never running code, and kept only while
a run can resume; a finished run keeps its final weights when asked."""

import json

import pytest
import torch

import moe_core.training.trainer as train_module
from moe_core.config.run_config import build_config
from moe_core.errors import UserInputError
from moe_core.model.transformer import MoEModel
from moe_core.training.checkpoint import BEST_CHECKPOINT_FILE, CHECKPOINT_FILE, WEIGHTS_FILE
from moe_core.training.objective import evaluate
from moe_core.training.trainer import train


def smoke(experiment="baseline", **overrides):
    return build_config(experiment, "smoke", overrides)


def history(metrics):
    return [(r["step"], r["val_loss"], r["train_loss"]) for r in metrics["evals"]]


def interrupted_after_first_checkpoint(cfg, seed, run_dir, monkeypatch):
    """Train until the first checkpoint is written, then stop as Ctrl-C would; the record."""
    real_save_checkpoint = train_module.save_checkpoint

    def save_then_interrupt(*args):
        real_save_checkpoint(*args)
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(train_module, "save_checkpoint", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, seed=seed, out_dir=run_dir, progress=False)
    return json.loads((run_dir / "metrics.json").read_text())


def model_from(path, metrics, cfg, key=None):
    """A fresh model of the run's shape with the file's weights loaded strictly."""
    saved = torch.load(path, weights_only=True)
    model = MoEModel(cfg, vocab_size=metrics["data"]["vocab_size"])
    model.load_state_dict(saved if key is None else saved[key])
    return model


@pytest.mark.parametrize("experiment, overrides, status", [
    ("baseline", {}, "completed"),
    ("early_stopping", {"patience": 2, "min_delta": 100.0}, "early_stopped"),
])
def test_a_finished_run_keeps_no_checkpoint_and_no_weights_unless_asked(tmp_path, experiment,
                                                                        overrides, status):
    metrics = train(smoke(experiment, **overrides), seed=0, out_dir=tmp_path, progress=False)
    assert metrics["status"] == status
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    assert not (tmp_path / WEIGHTS_FILE).exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == status


def test_keep_weights_keeps_the_final_model_loadable_with_the_weights_only_loader(
        tmp_path, monkeypatch):
    cfg = smoke(keep_weights=True)
    saved_models = []
    real_save_checkpoint = train_module.save_checkpoint

    def recording(path, config_hash, seed, model, *args):
        saved_models.append({k: v.clone() for k, v in model.state_dict().items()})
        real_save_checkpoint(path, config_hash, seed, model, *args)

    monkeypatch.setattr(train_module, "save_checkpoint", recording)
    metrics = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert metrics["status"] == "completed"
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    model = model_from(tmp_path / WEIGHTS_FILE, metrics, cfg)
    final = saved_models[-1]  # the checkpoint at the last eval holds the final model
    kept = model.state_dict()
    assert kept.keys() == final.keys()
    assert all(torch.equal(kept[k], final[k]) for k in final)
    # the kept weights score the val loss recorded at the end of the run
    from moe_core.data.splits import prepare_data

    val = evaluate(model, prepare_data(cfg).val, cfg.batch_size, torch.device("cpu"), None)
    assert val["loss"] == pytest.approx(metrics["final_metrics"]["val_loss"], rel=1e-6)


def test_an_interrupted_run_keeps_its_checkpoint_and_resumes_to_the_uninterrupted_weights(
        tmp_path, monkeypatch):
    cfg = smoke(keep_weights=True)
    full = train(cfg, seed=1, out_dir=tmp_path / "full", progress=False)
    run_dir = tmp_path / "interrupted"
    partial = interrupted_after_first_checkpoint(cfg, 1, run_dir, monkeypatch)
    assert partial["status"] == "interrupted" and partial["actual_steps"] < cfg.max_steps
    assert (run_dir / CHECKPOINT_FILE).exists()
    assert not (run_dir / WEIGHTS_FILE).exists()  # the run has no final weights yet
    resumed = train(cfg, seed=1, out_dir=run_dir, progress=False)
    assert resumed["status"] == "completed"
    assert resumed["evals"][0] == partial["evals"][0]  # resumed, not retrained
    assert history(resumed) == history(full)
    assert not (run_dir / CHECKPOINT_FILE).exists()
    kept = torch.load(run_dir / WEIGHTS_FILE, weights_only=True)
    uninterrupted = torch.load(tmp_path / "full" / WEIGHTS_FILE, weights_only=True)
    assert all(torch.equal(kept[k], uninterrupted[k]) for k in uninterrupted)


def test_best_checkpoint_is_kept_when_asked_after_the_run_finishes(tmp_path):
    cfg = smoke(save_best_checkpoint=True)
    metrics = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    model_from(tmp_path / BEST_CHECKPOINT_FILE, metrics, cfg, key="model")  # loads strictly


def test_a_finished_run_is_skipped_even_when_keep_weights_is_asked_later(tmp_path, capsys):
    first = train(smoke(), seed=0, out_dir=tmp_path, progress=False)
    again = train(smoke(keep_weights=True), seed=0, out_dir=tmp_path, progress=False)
    assert again["finished_at"] == first["finished_at"]  # the same run: not trained again
    assert "finished without keep_weights" in capsys.readouterr().err
    assert not (tmp_path / WEIGHTS_FILE).exists()
    forced = train(smoke(keep_weights=True), seed=0, out_dir=tmp_path, progress=False,
                   force=True)
    assert forced["status"] == "completed" and (tmp_path / WEIGHTS_FILE).exists()


def test_force_retrains_without_the_weights_of_the_run_it_replaces(tmp_path):
    train(smoke(keep_weights=True), seed=0, out_dir=tmp_path, progress=False)
    assert (tmp_path / WEIGHTS_FILE).exists()
    forced = train(smoke(lr=0.02), seed=0, out_dir=tmp_path, progress=False, force=True)
    assert forced["config"]["lr"] == 0.02
    assert not (tmp_path / WEIGHTS_FILE).exists()
    assert not (tmp_path / CHECKPOINT_FILE).exists()


@pytest.mark.slow
def test_checkpoint_from_another_config_is_not_resumed(tmp_path, monkeypatch):
    cfg = smoke()
    interrupted_after_first_checkpoint(cfg, 0, tmp_path, monkeypatch)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    (tmp_path / "metrics.json").unlink()  # only the checkpoint is left of the first run
    other = train(smoke(lr=0.02), seed=0, out_dir=tmp_path, progress=False)
    assert other["status"] == "completed"
    assert other["evals"][0]["step"] == cfg.eval_every  # trained from the start


class _RunsCodeWhenUnpickled:
    """Stands for a planted object: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo planted > planted.txt",))


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_and_not_resumed(tmp_path,
                                                                            monkeypatch):
    cfg = smoke()
    interrupted = {"status": "interrupted", "config_hash": cfg.config_hash(), "seed": 0}
    (tmp_path / "metrics.json").write_text(json.dumps(interrupted))
    torch.save({"config_hash": cfg.config_hash(), "seed": 0,
                "state": _RunsCodeWhenUnpickled()}, tmp_path / CHECKPOINT_FILE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=r"checkpoint\.pt cannot be loaded as a "
                                             r"checkpoint.*not resumed from") as error:
        train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert "UnpicklingError" in str(error.value)
    assert not (tmp_path / "planted.txt").exists()  # the callable never ran
    assert json.loads((tmp_path / "metrics.json").read_text()) == interrupted
