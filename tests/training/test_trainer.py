"""The training loop: reproducible, resumable, stopping as told, recording a superset of the
reference's metrics."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from moe_core import paths
from moe_core.config.run_config import build_config
from moe_core.data.splits import prepare_data
from moe_core.errors import UserInputError
from moe_core.record.metrics_json import EvalRecord, LayerRouting, read_metrics
from moe_core.training.checkpoint import CHECKPOINT_FILE
from moe_core.training.trainer import train

REFERENCE = paths.CHECKOUT.parent / "shared" / "reference" / "exp8_original"


def smoke(experiment="baseline", **overrides):
    return build_config(experiment, "smoke", overrides)


def history(metrics):
    return [(r["step"], r["val_loss"], r["train_loss"], r["val_loss_per_sequence"])
            for r in metrics["evals"]]


@pytest.mark.slow
def test_same_seed_gives_an_identical_history(tmp_path):
    cfg = smoke()
    a = train(cfg, seed=3, out_dir=tmp_path / "a", progress=False)
    b = train(cfg, seed=3, out_dir=tmp_path / "b", progress=False)
    c = train(cfg, seed=4, out_dir=tmp_path / "c", progress=False)
    assert history(a) == history(b)
    assert history(a) != history(c)


@pytest.mark.slow
def test_an_lr_drop_run_is_its_control_until_the_drop_and_runs_on_past_its_length(tmp_path):
    control = train(smoke(), seed=2, out_dir=tmp_path / "control", progress=False)
    # 12 updates of 2 micro-steps: the drop comes after update 6 (step 12)
    drop = train(smoke(lr_drop_at=0.5, lr_drop_to=0.1, steps_fraction=2.0), seed=2,
                 out_dir=tmp_path / "drop", progress=False)
    steps = [r["step"] for r in drop["evals"]]
    assert steps[-1] == 48
    until = sum(s <= 12 for s in steps)
    assert history(drop)[:until] == history(control)[:until]
    assert history(drop)[until:len(control["evals"])] != history(control)[until:]


@pytest.mark.slow
def test_another_val_sample_scores_other_text_and_trains_the_same_model(tmp_path):
    own = train(smoke(), seed=1, out_dir=tmp_path / "own", progress=False)
    second = train(smoke(val_sample=1), seed=1, out_dir=tmp_path / "second", progress=False)
    assert [(r["step"], r["train_loss"]) for r in own["evals"]] == \
        [(r["step"], r["train_loss"]) for r in second["evals"]]
    assert [r["val_loss"] for r in own["evals"]] != [r["val_loss"] for r in second["evals"]]
    shas = [prepare_data(smoke(val_sample=k)).stats for k in (0, 1)]
    assert shas[0]["train"]["windows_sha"] == shas[1]["train"]["windows_sha"]
    assert shas[0]["val"]["windows_sha"] != shas[1]["val"]["windows_sha"]


@pytest.mark.slow
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    cfg = smoke(checkpoint_every_evals=2)
    full = train(cfg, seed=1, out_dir=tmp_path / "full", progress=False)
    # interrupt right after the checkpoint at eval 4 (step 16); eval_every 4 is not
    # a multiple of the update boundary only if accumulation were 3, so also test that below
    calls = {"n": 0}
    real_save = torch.save

    def crash_after_second_checkpoint(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        if "checkpoint" in str(path):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

    import moe_core.training.trainer as train_module

    train_module.torch.save = crash_after_second_checkpoint
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, seed=1, out_dir=tmp_path / "resumed", progress=False)
    finally:
        train_module.torch.save = real_save
    partial = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert partial["status"] == "interrupted"
    assert 0 < partial["actual_steps"] < cfg.max_steps
    resumed = train(cfg, seed=1, out_dir=tmp_path / "resumed", progress=False)
    assert resumed["status"] == "completed"
    assert history(resumed) == history(full)


@pytest.mark.slow
def test_resume_mid_accumulation_restores_pending_gradients(tmp_path):
    # eval (and checkpoint) every 3 micro-steps with accumulation 2: every other
    # checkpoint falls between two micro-batches of one update
    cfg = smoke(eval_every=3, grad_accum_steps=2, max_steps=18, checkpoint_every_evals=1)
    full = train(cfg, seed=0, out_dir=tmp_path / "full", progress=False)
    import moe_core.training.trainer as train_module

    real_save, calls = torch.save, {"n": 0}

    def crash_after_first(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        if "checkpoint" in str(path):
            calls["n"] += 1
            if calls["n"] == 1:  # step 3: one micro-batch of update 2 pending
                raise KeyboardInterrupt

    train_module.torch.save = crash_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, seed=0, out_dir=tmp_path / "r", progress=False)
    finally:
        train_module.torch.save = real_save
    resumed = train(cfg, seed=0, out_dir=tmp_path / "r", progress=False)
    assert history(resumed) == history(full)


@pytest.mark.slow
def test_forced_nan_stops_the_run_as_diverged_keeping_what_was_recorded(tmp_path):
    cfg = smoke(fault_nan_at_step=10)
    metrics = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert metrics["status"] == "diverged"
    assert metrics["diverged_at_step"] == 10
    assert [r["step"] for r in metrics["evals"]] == [4, 8]  # evals before the NaN are kept
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["status"] == "diverged" and len(on_disk["evals"]) == 2


def test_early_stopping_stops_after_patience_evals_without_improvement(tmp_path):
    # min_delta larger than any possible improvement: the first eval is the best forever
    cfg = smoke("early_stopping", patience=2, min_delta=100.0)
    metrics = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert metrics["status"] == "early_stopped" and metrics["stopped_early"] is True
    assert metrics["actual_steps"] == 3 * cfg.eval_every  # best eval + 2 without improvement
    assert metrics["actual_steps"] < cfg.max_steps


@pytest.mark.slow
def test_finished_run_is_not_trained_again_unless_forced(tmp_path):
    cfg = smoke()
    first = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    again = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert again["finished_at"] == first["finished_at"]
    forced = train(cfg, seed=0, out_dir=tmp_path, progress=False, force=True)
    assert forced["finished_at"] >= first["finished_at"] and forced["status"] == "completed"


@pytest.mark.slow
def test_metrics_are_a_superset_of_the_reference_format(tmp_path):
    metrics = train(smoke(), seed=0, out_dir=tmp_path, progress=False)
    reference_path = REFERENCE / "baseline" / "metrics.json"
    if reference_path.exists():
        reference = json.loads(reference_path.read_text())
        for key in reference:
            assert key in metrics, key
        for key in reference["history"]:
            assert len(metrics["history"][key]) == len(metrics["evals"]), key
        for key in reference["experiment_config"]:
            assert key in metrics["experiment_config"]
    h = metrics["history"]
    assert h["val_perplexities"][-1] == pytest.approx(math.exp(h["val_losses"][-1]))
    assert h["elapsed_times"][-1] == pytest.approx(metrics["evals"][-1]["elapsed_s"] / 60)
    record = metrics["evals"][-1]
    # every eval holds exactly the record module's EvalRecord, in its order, on disk too
    on_disk = read_metrics(tmp_path)
    assert on_disk == json.loads(json.dumps(metrics))
    for recorded in (record, on_disk["evals"][-1]):
        assert list(recorded) == list(EvalRecord.__annotations__)
    assert list(record["routing"][0]) == [k for k in LayerRouting.__annotations__
                                          if k != "coselection"]
    assert "coselection" in metrics["final_routing"][0]
    assert set(record["lr"]) == {"muon", "adamw"}
    assert record["lr"]["adamw"] == pytest.approx(0.1 * record["lr"]["muon"])
    assert len(record["routing"]) == 1 and len(record["routing"][0]["tokens_per_expert"]) == 4
    assert metrics["status"] == "completed" and len(metrics["config_hash"]) == 16
    assert metrics["data"]["stats"]["train"]["sequences"] > 0


@pytest.mark.slow
def test_tokens_and_epochs_seen_count_micro_batches(tmp_path):
    cfg = smoke()
    metrics = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    last = metrics["evals"][-1]
    n_train = metrics["data"]["stats"]["train"]["sequences"]
    assert last["tokens_seen"] == cfg.max_steps * cfg.batch_size * cfg.seq_len
    assert last["epochs_seen"] == pytest.approx(cfg.max_steps * cfg.batch_size / n_train)
    assert last["optimizer_update"] == cfg.max_steps // cfg.grad_accum_steps


@pytest.mark.slow
def test_trained_smoke_model_val_loss_is_not_below_the_bayes_floor(tmp_path):
    cfg = smoke(max_steps=60, dropout=0.0)
    metrics = train(cfg, seed=0, out_dir=tmp_path, progress=False)
    floor = metrics["bayes_floor"]
    losses = [r["val_loss"] for r in metrics["evals"]]
    assert losses[-1] < losses[0]  # it learned something
    assert min(losses) >= floor


def test_val_loss_standard_error_comes_from_per_sequence_losses(tmp_path):
    from moe_core.model.transformer import MoEModel
    from moe_core.training.objective import evaluate

    cfg = smoke()
    data = prepare_data(cfg)
    torch.manual_seed(0)
    model = MoEModel(cfg, vocab_size=data.vocab_size)
    result = evaluate(model, data.val, 4, torch.device("cpu"), None)
    model.eval()
    with torch.no_grad():
        logits, _, _ = model(data.val[:, :-1])
        per_seq = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), data.val[:, 1:], reduction="none").mean(1).double()
    assert result["loss"] == pytest.approx(per_seq.mean().item(), rel=1e-5)
    assert result["loss_se"] == pytest.approx(
        (per_seq.std() / math.sqrt(len(per_seq))).item(), rel=1e-4)


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserInputError, match="cannot be written"):
        train(smoke(), seed=0, out_dir=blocker / "run", progress=False)


def test_train_split_smaller_than_a_batch_is_a_clear_error(tmp_path):
    cfg = dataclasses.replace(smoke(), batch_size=10_000)
    with pytest.raises(UserInputError, match="batch_size"):
        train(cfg, seed=0, out_dir=tmp_path, progress=False)


@pytest.mark.slow
def test_a_folder_holding_another_configs_run_is_refused_unless_forced(tmp_path):
    first = train(smoke(), seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(UserInputError, match=r"holds a run of another config or seed "
                                             r"\(completed.*--force"):
        train(smoke(lr=0.02), seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(UserInputError, match="another config or seed"):
        train(smoke(), seed=1, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text()) == first  # untouched
    forced = train(smoke(lr=0.02), seed=0, out_dir=tmp_path, progress=False, force=True)
    assert forced["config"]["lr"] == 0.02


@pytest.mark.slow
def test_each_eval_records_every_val_sequence_loss_in_split_order(tmp_path):
    recorded = train(smoke(), seed=0, out_dir=tmp_path, progress=False)
    n_val = recorded["data"]["stats"]["val"]["sequences"]
    for record in recorded["evals"]:
        per_sequence = np.asarray(record["val_loss_per_sequence"])
        assert per_sequence.shape == (n_val,)
        # equal-length windows: the split's loss is the plain mean of its sequences' losses
        assert per_sequence.mean() == pytest.approx(record["val_loss"], abs=1e-6)
        se = per_sequence.std(ddof=1) / np.sqrt(n_val)
        assert se == pytest.approx(record["val_loss_se"], rel=1e-4)
    assert recorded["data"]["stats"]["val"]["windows_sha"]


INTERRUPTIBLE = """
import sys
from moe_core.config.run_config import build_config
from moe_core.training.trainer import train
cfg = build_config("baseline", "smoke", {"max_steps": 400, "checkpoint_every_evals": 1000})
try:
    train(cfg, seed=0, out_dir=sys.argv[1], progress=False)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_at_once_and_the_resumed_run_matches_an_uninterrupted_one(
        tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "interrupted"
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, str(run_dir)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for a few evals, none of them a checkpoint
        try:
            if len(json.loads((run_dir / "metrics.json").read_text())["evals"]) >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == 130
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert recorded["status"] == "interrupted"
    saved = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    # written at the interrupt (the periodic one would come only every 1000 evals)
    assert saved["state"]["step"] == recorded["actual_steps"] >= 12
    cfg = smoke(max_steps=400, checkpoint_every_evals=1000)
    resumed = train(cfg, seed=0, out_dir=run_dir, progress=False)
    full = train(cfg, seed=0, out_dir=tmp_path / "full", progress=False)
    assert resumed["status"] == "completed" and history(resumed) == history(full)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["baseline", "aux_free_balance"])
def test_evals_only_measure_a_sparser_run_is_the_same_run_at_its_evals(tmp_path, experiment):
    """Eval spacing is a measurement choice: evals draw no random numbers and change no
    state training reads (routing statistics, the aux-free bias), so a run evaluated every
    2nd step holds, at its shared steps, the same val losses as one evaluated every step."""
    dense = train(smoke(experiment, eval_every=2), seed=1, out_dir=tmp_path / "d",
                  progress=False)
    sparse = train(smoke(experiment, eval_every=6), seed=1, out_dir=tmp_path / "s",
                   progress=False)

    def at(metrics, steps):
        return [(r["step"], r["val_loss"], r["val_loss_per_sequence"], r["train_subset_loss"])
                for r in metrics["evals"] if r["step"] in steps]

    shared = {r["step"] for r in sparse["evals"]} & {r["step"] for r in dense["evals"]}
    assert len(shared) >= 3 and len(shared) < len(dense["evals"])
    assert at(dense, shared) == at(sparse, shared)
