"""Specification of moe_core.analysis.results: every metrics.json, ours or the reference's,
as tables."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from moe_core import paths
from moe_core.analysis.results import EVAL_COLUMNS, RUN_COLUMNS, ArmGroup, load_runs
from moe_core.analysis.summary import results_table
from moe_core.config.run_config import build_config
from moe_core.training.trainer import train

REFERENCE_DIR = paths.CHECKOUT.parent / "shared" / "reference" / "exp8_original"
REFERENCE_EXPERIMENTS = {"baseline", "early_stopping", "constant_lr", "lower_lb_weight", "no_lb",
                         "higher_dropout", "linear_decay", "slower_min_lr", "short_run",
                         "seed_run"}
needs_reference = pytest.mark.skipif(not REFERENCE_DIR.is_dir(),
                                     reason="the reference's recorded files are not present")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """One finished smoke run of ours (3 evals)."""
    run_dir = tmp_path_factory.mktemp("runs") / "baseline" / "seed0"
    cfg = build_config("baseline", "smoke", {"max_steps": 12})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 25k-parameter model trains fastest on one thread
    train(cfg, seed=0, out_dir=run_dir, progress=False)
    torch.set_num_threads(threads)
    return run_dir


def _copy_run(source: Path, target: Path, seed: int, final_loss_shift: float = 0.0) -> None:
    """A copy of a run's metrics.json as another seed whose last eval is shifted."""
    metrics = json.loads((source / "metrics.json").read_text())
    metrics["seed"] = seed
    metrics["evals"][-1]["val_loss"] += final_loss_shift
    metrics["final_metrics"]["val_loss"] += final_loss_shift
    target.mkdir(parents=True)
    (target / "metrics.json").write_text(json.dumps(metrics))


@needs_reference
def test_reader_loads_all_ten_reference_files_as_reference_with_their_losses():
    results = load_runs(reference_dirs=[REFERENCE_DIR])
    runs = results.runs.set_index("experiment")

    assert set(runs.index) == REFERENCE_EXPERIMENTS  # comparison_summary.json is not a run
    assert (runs["source"] == "reference").all()
    assert (runs["status"] == "completed").all()
    for folder in REFERENCE_DIR.iterdir():
        if not folder.is_dir():
            continue
        recorded = json.loads((folder / "metrics.json").read_text())
        name = "seed_run" if folder.name == "_seed_run" else folder.name
        assert runs.loc[name, "final_loss"] == recorded["final_metrics"]["val_loss"]
        assert runs.loc[name, "best_loss"] == min(recorded["history"]["val_losses"])
        if "best_metrics" in recorded:
            assert runs.loc[name, "best_step"] == recorded["best_metrics"]["step"]


@needs_reference
def test_reference_curves_become_eval_rows_with_their_logged_lr_and_an_inflection_verdict():
    results = load_runs(reference_dirs=[REFERENCE_DIR])
    baseline = results.evals[results.evals["run_id"] == "baseline (reference)"]

    assert len(baseline) == 100
    assert baseline["lr"].iloc[-1] == pytest.approx(0.009051, abs=1e-6)
    assert baseline["fraction"].iloc[-1] == 1.0
    assert baseline["train_subset_loss"].isna().all()  # the reference never measured it
    assert results.runs["inflection"].notna().all()


@needs_reference
def test_reference_format_found_among_run_dirs_is_labelled_reference():
    results = load_runs(REFERENCE_DIR / "no_lb")

    assert results.runs["source"].tolist() == ["reference"]
    assert results.runs["experiment"].tolist() == ["no_lb"]


def test_our_smoke_run_loads_with_every_column(smoke_run):
    results = load_runs(smoke_run)
    run = results.runs.iloc[0]
    evals = results.evals

    assert list(results.runs.columns) == RUN_COLUMNS
    assert set(EVAL_COLUMNS) | {"lr_muon", "lr_adamw"} <= set(evals.columns)
    assert (run["run_id"], run["experiment"], run["seed"], run["source"], run["status"]) == \
        ("baseline/seed0", "baseline", 0, "ours", "completed")
    assert run["final_loss"] == evals["val_loss"].iloc[-1]
    assert run["best_loss"] == evals["val_loss"].min()
    assert run["final_gap"] == pytest.approx(evals["val_loss"].iloc[-1]
                                             - evals["train_subset_loss"].iloc[-1])
    assert math.isfinite(run["bayes_floor"]) and run["inflection"] is not None
    assert evals["step"].tolist() == [4, 8, 12]
    assert evals["fraction"].iloc[-1] == 1.0
    assert evals["lr_adamw"].iloc[-1] == pytest.approx(0.1 * evals["lr_muon"].iloc[-1])
    assert (evals["lr"] == evals["lr_muon"]).all()  # `lr` is the first group's
    assert evals[["epochs_seen", "tokens_seen", "max_violation", "router_entropy",
                  "val_loss_se", "aux_loss"]].notna().all().all()


def test_routing_tables_hold_every_expert_of_every_layer_at_every_eval(smoke_run):
    results = load_runs(smoke_run)
    cfg = build_config("baseline", "smoke")

    assert len(results.routing) == 3 * cfg.n_layers * cfg.num_experts
    shares = results.routing.groupby(["step", "layer"])["load_share"].sum()
    assert np.allclose(shares, 1.0)
    matrix = results.coselection_matrix("baseline/seed0")
    assert matrix.shape == (cfg.n_layers, cfg.num_experts, cfg.num_experts)
    assert np.allclose(matrix, matrix.transpose(0, 2, 1))
    # each token picks top_k experts, so the diagonal (own shares) sums to top_k
    assert np.allclose(np.trace(matrix, axis1=1, axis2=2), cfg.top_k)


def test_corrupted_metrics_is_listed_unreadable_and_the_others_load(smoke_run, tmp_path):
    shutil.copytree(smoke_run, tmp_path / "baseline" / "seed0")
    broken = tmp_path / "no_lb" / "seed0"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"status": "running", "evals": [{"step"')

    results = load_runs(tmp_path)
    runs = results.runs.set_index("run_id")

    assert runs.loc["no_lb/seed0", "status"] == "unreadable"
    assert "JSONDecodeError" in runs.loc["no_lb/seed0", "error"]
    assert runs.loc["baseline/seed0", "status"] == "completed"
    assert set(results.evals["run_id"]) == {"baseline/seed0"}
    assert "unreadable" in results_table(results)["status"].tolist()


def test_results_table_aggregates_two_seeds_into_mean_and_sd(smoke_run, tmp_path):
    _copy_run(smoke_run, tmp_path / "baseline" / "seed0", seed=0)
    _copy_run(smoke_run, tmp_path / "baseline" / "seed1", seed=1, final_loss_shift=0.01)
    results = load_runs(tmp_path)

    table = results_table(results)
    row = table.iloc[0]
    finals = results.runs["final_loss"]

    assert len(table) == 1 and row["arm"] == "baseline" and row["seeds"] == 2
    assert row["final loss (nats)"] == f"{finals.mean():.4f} ± {finals.std(ddof=1):.4f}"
    assert " ± " in row["epochs"] and row["status"] == "completed"


def test_the_same_run_read_twice_counts_once_and_names_the_copy_counted(smoke_run, tmp_path):
    _copy_run(smoke_run, tmp_path / "quick" / "baseline" / "seed0", seed=0)
    _copy_run(smoke_run, tmp_path / "all" / "baseline" / "seed0", seed=0)
    _copy_run(smoke_run, tmp_path / "all" / "baseline" / "seed1", seed=1)
    runs = load_runs(tmp_path / "all", tmp_path / "quick").runs

    duplicates = runs[runs["status"] == "duplicate"]
    assert len(duplicates) == 1
    assert str(tmp_path / "all" / "baseline" / "seed0") in duplicates["error"].iloc[0]
    assert results_table(load_runs(tmp_path / "all", tmp_path / "quick")).iloc[0]["seeds"] == 2


def test_two_configs_under_one_arm_are_two_groups_labelled_by_what_differs(smoke_run, tmp_path):
    _copy_run(smoke_run, tmp_path / "a" / "baseline" / "seed0", seed=0)
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    metrics["config"]["dropout"] = 0.0
    metrics["config_hash"] = "another-config"
    (tmp_path / "b" / "baseline" / "seed0").mkdir(parents=True)
    (tmp_path / "b" / "baseline" / "seed0" / "metrics.json").write_text(json.dumps(metrics))

    results = load_runs(tmp_path)
    runs = results.runs
    assert sorted(runs["group"]) == ["baseline [dropout=0.0]", "baseline [dropout=0.1]"]
    assert (runs["status"] == "completed").all()  # not duplicates: different configs
    # the group is structured: the arm and what differs, each in its own column
    assert (runs["arm"] == "baseline").all()
    assert sorted(runs["variant"]) == ["dropout=0.0", "dropout=0.1"]
    assert results.groups == {"baseline [dropout=0.0]": ArmGroup("baseline", "dropout=0.0"),
                              "baseline [dropout=0.1]": ArmGroup("baseline", "dropout=0.1")}
    assert results_table(results)["arm"].tolist() == ["baseline [dropout=0.0]",
                                                      "baseline [dropout=0.1]"]


def test_a_group_keeps_its_arm_and_condition_whatever_its_label_reads():
    group = ArmGroup("no_lb@reference_lr", "dropout=0.0")
    assert group.label == "no_lb@reference_lr [dropout=0.0]"
    assert (group.experiment, group.condition) == ("no_lb", "reference_lr")
    assert ArmGroup("baseline").label == "baseline" and ArmGroup("baseline").variant == ""


def test_one_config_per_arm_leaves_every_variant_empty(smoke_run):
    results = load_runs(smoke_run)
    assert results.runs["variant"].tolist() == [""]
    assert results.groups == {"baseline": ArmGroup("baseline")}


def test_per_sequence_val_losses_are_read_per_eval(smoke_run):
    results = load_runs(smoke_run)
    [(run_id, sequences)] = results.val_sequences.items()
    evals = results.evals[results.evals["run_id"] == run_id]
    assert sequences.shape[0] == len(evals)
    np.testing.assert_allclose(sequences.mean(1), evals["val_loss"], atol=1e-5)
    assert results.runs.iloc[0]["val_sha"]


def test_a_diverged_run_is_analysed_up_to_its_first_non_finite_eval(smoke_run, tmp_path):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    metrics["status"] = "diverged"
    metrics["evals"][-1]["val_loss"] = float("nan")
    target = tmp_path / "baseline" / "seed0"
    target.mkdir(parents=True)
    (target / "metrics.json").write_text(json.dumps(metrics))

    run = load_runs(tmp_path).runs.iloc[0]

    assert run["status"] == "diverged"
    assert run["best_loss"] == min(e["val_loss"] for e in metrics["evals"][:-1])
