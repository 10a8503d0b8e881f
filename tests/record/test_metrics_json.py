"""Specification of moe_core.record.metrics_json: the one owner of a run's record (its typed
records, how they are written and read, and whether a run is finished)."""

import json
import subprocess
import sys

import pytest

from moe_core.analysis.results import load_runs
from moe_core.errors import UserInputError
from moe_core.record import metrics_json as mj

CONFIG = {"name": "baseline", "description": "the control", "max_steps": 8,
          "lr_schedule": "cosine", "early_stopping": False, "load_balancing_weight": 0.01,
          "dropout": 0.1, "batch_size": 8, "num_experts": 2, "top_k": 1, "condition": ""}


def layer(**changes):
    values = {"tokens_per_expert": [3.0, 1.0], "mean_router_prob": [0.6, 0.4],
              "router_entropy": 0.67, "balance_loss": 1.1, "z_loss": 0.2,
              "max_violation": 0.5, "coselection": [[0.75, 0.0], [0.0, 0.25]]}
    return mj.layer_routing(**{**values, **changes})


def an_eval(step, val_loss, **changes):
    values = dict(step=step, optimizer_update=step // 2, tokens_seen=64 * step,
                  epochs_seen=step / 10, elapsed_s=0.5 * step, tokens_per_s=128.0,
                  lr={"muon": 0.01, "adamw": 0.001}, lr_next={"muon": 0.009, "adamw": 0.0009},
                  train_loss=val_loss - 0.1, aux_loss=0.01, grad_norm=0.3, val_loss=val_loss,
                  val_loss_se=0.02, val_loss_per_sequence=[val_loss - 0.1, val_loss + 0.1],
                  val_accuracy=0.25, val_perplexity=2.7 ** val_loss,
                  train_subset_loss=val_loss - 0.2, train_subset_accuracy=0.3,
                  routing=[layer()])
    return mj.eval_record(**{**values, **changes})


def a_record(status=mj.COMPLETED, config_hash="abc", seed=0, **extra):
    facts = mj.run_facts(seed=seed, config=dict(CONFIG), config_hash=config_hash,
                         run_dir="runs/x/baseline/seed0", started_at="2026-01-01T00:00:00+00:00")
    return mj.build_metrics(CONFIG, facts, [an_eval(4, 3.0), an_eval(8, 2.5)], 6.0, 8, status,
                            **extra)


def test_an_eval_record_has_exactly_the_declared_keys_in_their_declared_order():
    record = an_eval(4, 3.0)
    assert list(record) == list(mj.EvalRecord.__annotations__)
    shuffled = dict(reversed(list(record.items())))
    assert list(mj.eval_record(**shuffled)) == list(record)  # the module orders, not the caller


@pytest.mark.parametrize("change, complaint", [
    ({"drop": "val_loss_se"}, r"missing \['val_loss_se'\]"),
    ({"add": "val_loss_median"}, r"not declared \['val_loss_median'\]"),
])
def test_an_eval_record_with_a_field_missing_or_undeclared_is_refused(change, complaint):
    values = dict(an_eval(4, 3.0))
    values.pop(change.get("drop", "-"), None)
    if "add" in change:
        values[change["add"]] = 1.0
    with pytest.raises(TypeError, match=r"EvalRecord: .*" + complaint):
        mj.eval_record(**values)


def test_layer_routing_keeps_coselection_optional_and_in_last_place():
    assert list(layer()) == list(mj.LayerRouting.__annotations__)
    without = {k: v for k, v in layer().items() if k != "coselection"}
    assert mj.layer_routing(**without) == without
    with pytest.raises(TypeError, match="missing"):
        mj.layer_routing(tokens_per_expert=[1.0])


def test_a_record_is_the_reference_format_plus_ours_in_a_fixed_key_order():
    record = a_record(error="none")
    assert list(record) == [
        "schema_version", "experiment_config", "final_metrics", "best_metrics",
        "total_time_minutes", "stopped_early", "actual_steps", "history", "status", "seed",
        "config", "config_hash", "run_dir", "started_at", "finished_at", "evals",
        "final_routing", "error"]
    assert record["final_metrics"]["step"] == record["best_metrics"]["step"] == 8
    assert record["history"]["learning_rates"] == [0.009, 0.009]  # the first group's next LR
    assert record["history"]["elapsed_times"] == [2 / 60, 4 / 60]  # minutes, as the reference
    assert "coselection" not in record["evals"][0]["routing"][0]  # kept at the end only
    assert record["final_routing"][0]["coselection"] == [[0.75, 0.0], [0.0, 0.25]]


def test_a_record_round_trips_through_write_and_read(tmp_path):
    record = a_record()
    mj.write_metrics(tmp_path, record)
    assert mj.read_metrics(tmp_path) == record
    assert mj.parse_metrics(tmp_path / mj.METRICS_FILE) == record
    assert list(mj.read_metrics(tmp_path)) == list(record)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left


def test_a_written_record_is_read_by_the_results_tables(tmp_path):
    (tmp_path / "baseline" / "seed0").mkdir(parents=True)
    mj.write_metrics(tmp_path / "baseline" / "seed0", a_record())
    run = load_runs(tmp_path).runs.iloc[0]
    assert (run["run_id"], run["status"], run["final_loss"], run["best_step"]) == \
        ("baseline/seed0", "completed", 2.5, 8)


def test_finished_is_decided_by_the_status_alone_and_this_run_by_hash_and_seed():
    assert [mj.is_finished_status(s) for s in (mj.COMPLETED, mj.EARLY_STOPPED, mj.RUNNING,
                                                mj.DIVERGED, mj.FAILED, mj.INTERRUPTED, None)] \
        == [True, True, False, False, False, False, False]
    done, diverged = a_record(), a_record(mj.DIVERGED)
    assert mj.is_finished(done) and not mj.is_finished(diverged) and not mj.is_finished(None)
    assert mj.is_finished_run(done, "abc", 0)
    assert not mj.is_finished_run(done, "abc", 1) and not mj.is_finished_run(done, "def", 0)
    assert not mj.is_finished_run(diverged, "abc", 0)
    assert mj.has_ended(diverged) and not mj.has_ended(a_record(mj.RUNNING))
    assert mj.other_run(done, "abc", 0) is None and mj.other_run(None, "abc", 0) is None
    assert mj.other_run(done, "def", 0) == "completed, config abc, seed 0"


def test_a_failure_record_keeps_this_runs_record_and_replaces_another_runs(tmp_path):
    ours = mj.failure_record(CONFIG, "abc", 0, tmp_path, "KeyError: 'x'", a_record(mj.RUNNING))
    assert ours["status"] == mj.FAILED and ours["actual_steps"] == 8 and len(ours["evals"]) == 2
    other = mj.failure_record(CONFIG, "abc", 0, tmp_path, "boom", a_record(config_hash="def"))
    assert (other["actual_steps"], other["evals"], other["config_hash"]) == (0, [], "abc")
    assert other["config"] == CONFIG and other["run_dir"] == str(tmp_path)


@pytest.mark.parametrize("evals, complaint", [
    ([{"val_loss": 2.0}], r"evals\[0\] has no numeric step"),
    ([{"step": 4}, {"step": None}], r"evals\[1\] has no numeric step"),
    ([{"step": 4}, [4, 2.0]], r"evals\[1\] is a JSON list, not an eval record"),
    ({"step": 4}, "evals is a JSON dict, not a list of evals"),
])
def test_evals_a_reader_cannot_place_on_the_curve_are_named(evals, complaint):
    with pytest.raises(UserInputError, match=complaint):
        mj.evals_of({"evals": evals})


def test_a_run_whose_eval_lacks_its_step_is_listed_unreadable_saying_so(tmp_path):
    record = a_record()
    del record["evals"][1]["step"]
    (tmp_path / "baseline" / "seed0").mkdir(parents=True)
    (tmp_path / "baseline" / "seed0" / "metrics.json").write_text(json.dumps(record))
    run = load_runs(tmp_path).runs.iloc[0]
    assert run["status"] == "unreadable"
    assert run["error"].endswith("UserInputError: evals[1] has no numeric step")


@pytest.mark.parametrize("content, complaint", [
    ("[1, 2]", "expected a JSON object, got list"), ('{"status": "comp', "Unterminated string")])
def test_a_file_that_is_not_a_json_object_is_a_value_error(tmp_path, content, complaint):
    (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(ValueError, match=complaint):
        mj.parse_metrics(tmp_path / "metrics.json")


@pytest.mark.slow
def test_the_record_and_the_analysis_that_reads_it_never_import_torch():
    code = ("import sys, moe_core.record.metrics_json, moe_core.analysis.results, "
            "moe_core.analysis.summary, moe_core.analysis.verdicts; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
