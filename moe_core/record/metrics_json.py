"""A run folder's record: the name and format of metrics.json (its typed records, written
and read here only), its statuses and which of them count as finished, atomic writes, the
record of a run that failed before training could write one, and which run a folder
belongs to. The only module that knows the format (no torch here).

metrics.json is a superset of the reference framework's format (experiment_config,
final_metrics, best_metrics, total_time_minutes, stopped_early, actual_steps, history of
parallel lists in its units), so tools written for the reference read ours.

The records are TypedDicts, not dataclasses: they are the JSON objects themselves (written
by json.dumps in their declared key order, returned by `train`, indexed by notebooks), and
the eval records also travel in every checkpoint, which torch's weights_only loader reads
back only as plain data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

from moe_core.errors import UserInputError

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
RUNNING, COMPLETED, EARLY_STOPPED = "running", "completed", "early_stopped"
DIVERGED, FAILED, INTERRUPTED = "diverged", "failed", "interrupted"
FINISHED = (COMPLETED, EARLY_STOPPED)  # ended normally: a result to count


# ---------------------------------------------------------------- the records


class _RoutingStats(TypedDict):
    tokens_per_expert: list[float]
    mean_router_prob: list[float]
    router_entropy: float
    balance_loss: float
    z_loss: float
    max_violation: float


class LayerRouting(_RoutingStats, total=False):
    """One MoE layer's routing since the previous eval; the co-selection matrix (share of
    tokens routed to both experts) is kept in final_routing only, where it is small."""

    coselection: list[list[float]]


class EvalRecord(TypedDict):
    """One eval of a run, as metrics.json's `evals` holds it (and every checkpoint)."""

    step: int
    optimizer_update: int
    tokens_seen: int
    epochs_seen: float
    elapsed_s: float
    tokens_per_s: float
    lr: dict[str, float]  # per optimizer group, applied in the update just made
    lr_next: dict[str, float]  # what the scheduler holds for the next update (the reference's)
    train_loss: float
    aux_loss: float
    grad_norm: float
    val_loss: float
    val_loss_se: float
    val_loss_per_sequence: list[float]  # in the val split's order, rounded to 6 decimals
    val_accuracy: float
    val_perplexity: float
    train_subset_loss: float
    train_subset_accuracy: float
    routing: list[LayerRouting]


class EvalSummary(TypedDict):
    """final_metrics and best_metrics: the reference's summary of one eval."""

    val_loss: float
    val_accuracy: float
    val_perplexity: float
    val_loss_se: float
    step: int
    train_subset_loss: float


class History(TypedDict):
    """The reference's parallel lists, one value per eval, in its units (minutes)."""

    steps: list[int]
    val_losses: list[float]
    val_accuracies: list[float]
    val_perplexities: list[float]
    elapsed_times: list[float]
    learning_rates: list[float]


class ExperimentConfig(TypedDict):
    """The reference's experiment_config, under its names."""

    name: str
    description: str
    max_steps: int
    lr_schedule_type: str
    use_early_stopping: bool
    load_balancing_weight: float
    dropout: float
    batch_size: int
    num_experts: int
    expert_top_k: int


class RunFacts(TypedDict, total=False):
    """What is fixed about a run before it trains; a run that failed before training has
    its config and run_dir only, and a diverged run adds the step it diverged at."""

    seed: int
    config: dict[str, Any]  # RunConfig.to_dict()
    config_hash: str
    environment: dict[str, Any]
    data: dict[str, Any]
    bayes_floor: float
    parameter_counts: dict[str, int]
    run_dir: str | None
    started_at: str
    diverged_at_step: int


class RunRecord(RunFacts, total=False):
    """A whole metrics.json. In the file the run's facts sit between `status` and
    `finished_at`; every key may be missing from a reference file or a damaged one, so a
    reader uses .get."""

    schema_version: int
    experiment_config: ExperimentConfig
    final_metrics: EvalSummary | None
    best_metrics: EvalSummary | None
    total_time_minutes: float
    stopped_early: bool
    actual_steps: int
    history: History
    status: str
    finished_at: str | None
    evals: list[EvalRecord]
    final_routing: list[LayerRouting] | None
    error: str | None  # why a run failed or diverged
    experiment: str  # the arm, in the record of a run that failed outside training
    notebook: str  # its executed notebook


def _conform(kind: Any, values: Mapping[str, Any]) -> Any:
    """values in kind's declared key order; a TypeError for a required key missing or a key
    kind does not declare (the writer and the format can never drift apart)."""
    declared = list(kind.__annotations__)
    missing = sorted(kind.__required_keys__ - set(values))
    unknown = sorted(set(values) - set(declared))
    if missing or unknown:
        raise TypeError(f"{kind.__name__}: missing {missing}, not declared {unknown}")
    return {key: values[key] for key in declared if key in values}


def eval_record(**values: Any) -> EvalRecord:
    """An eval record with exactly EvalRecord's keys, in their order in metrics.json."""
    return _conform(EvalRecord, values)


def layer_routing(**values: Any) -> LayerRouting:
    """One layer's routing statistics with exactly LayerRouting's keys, in their order."""
    return _conform(LayerRouting, values)


def run_facts(**values: Any) -> RunFacts:
    """A run's fixed facts with RunFacts' keys only, in their order in metrics.json."""
    return _conform(RunFacts, values)


# ---------------------------------------------------------------- finished, and whose


def is_finished_status(status: Any) -> bool:
    """The status of a run that ended normally (completed or early-stopped): a result to
    count. The one definition of finished; a table of runs filters with it too."""
    return status in FINISHED


def is_finished(record: Mapping | None) -> bool:
    """The record says its run ended normally."""
    return bool(record) and is_finished_status(record.get("status"))


def has_ended(record: Mapping | None) -> bool:
    """The record says how its run ended, however it ended (it is not still running)."""
    return bool(record) and record.get("status") != RUNNING


def is_this_run(record: Mapping | None, config_hash: str, seed: int) -> bool:
    """The record is of this run: this config hash and seed."""
    return bool(record) and (record.get("config_hash"), record.get("seed")) == (config_hash,
                                                                                 seed)


def is_finished_run(record: Mapping | None, config_hash: str, seed: int) -> bool:
    """The record is of this run (config hash and seed) and it ended normally."""
    return is_this_run(record, config_hash, seed) and is_finished(record)


def other_run(record: Mapping | None, config_hash: str, seed: int) -> str | None:
    """A description of the run the record belongs to when it is not this one, else None."""
    if not record or is_this_run(record, config_hash, seed):
        return None
    return (f"{record.get('status')}, config {record.get('config_hash')}, seed "
            f"{record.get('seed')}")


def is_our_format(record: Mapping) -> bool:
    """Our metrics.json carries a status and a config hash; the reference's has neither."""
    return "status" in record and "config_hash" in record


# ---------------------------------------------------------------- reading and writing


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write to a temporary sibling, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True))
    os.replace(tmp, path)


def write_metrics(run_dir: Path, record: RunRecord) -> None:
    """The run folder's metrics.json, replaced atomically."""
    write_json_atomic(Path(run_dir) / METRICS_FILE, record)


def read_metrics(run_dir: Path) -> RunRecord | None:
    """A run folder's metrics.json, None when there is none; a UserInputError when it is
    not a JSON object."""
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: not valid JSON ({e}); delete it to rerun the run") from None
    if metrics is not None and not isinstance(metrics, dict):
        raise UserInputError(f"{path}: holds a JSON {type(metrics).__name__}, not the object "
                             "of a run's metrics; delete it to rerun the run")
    return metrics


def parse_metrics(path: Path) -> RunRecord:
    """The record in one metrics.json file, ours or the reference's; a ValueError (invalid
    JSON, or a UserInputError for JSON that is not an object) otherwise."""
    metrics = json.loads(Path(path).read_text())
    if not isinstance(metrics, dict):
        raise UserInputError(f"expected a JSON object, got {type(metrics).__name__}")
    return metrics


def evals_of(record: Mapping) -> list[EvalRecord]:
    """The record's eval records; a UserInputError naming the first that is not an object
    with a numeric step (a reader cannot place it on the curve)."""
    evals = record.get("evals") or []
    if not isinstance(evals, list):
        raise UserInputError(f"evals is a JSON {type(evals).__name__}, not a list of evals")
    for i, one in enumerate(evals):
        step = one.get("step") if isinstance(one, dict) else None
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            what = "has no numeric step" if isinstance(one, dict) \
                else f"is a JSON {type(one).__name__}, not an eval record"
            raise UserInputError(f"evals[{i}] {what}")
    return evals


def check_writable(folder: Path, what: str = "output folder") -> None:
    """Create folder if needed and prove a file can be written there, else a UserInputError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserInputError(f"{what} {folder} cannot be written ({e.strerror}); choose "
                             "another with --out") from None


# ---------------------------------------------------------------- building a record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _summary(r: EvalRecord | None) -> EvalSummary | None:
    return None if r is None else {
        "val_loss": r["val_loss"], "val_accuracy": r["val_accuracy"],
        "val_perplexity": r["val_perplexity"], "val_loss_se": r["val_loss_se"],
        "step": r["step"], "train_subset_loss": r["train_subset_loss"]}


def _experiment_config(config: Mapping) -> ExperimentConfig:
    """The reference's experiment_config from our config's keys."""
    return {"name": config["name"], "description": config["description"],
            "max_steps": config["max_steps"], "lr_schedule_type": config["lr_schedule"],
            "use_early_stopping": config["early_stopping"],
            "load_balancing_weight": config["load_balancing_weight"],
            "dropout": config["dropout"], "batch_size": config["batch_size"],
            "num_experts": config["num_experts"], "expert_top_k": config["top_k"]}


def _history(evals: Sequence[EvalRecord]) -> History:
    first_group = next(iter(evals[0]["lr_next"])) if evals else None
    return {"steps": [r["step"] for r in evals],
            "val_losses": [r["val_loss"] for r in evals],
            "val_accuracies": [r["val_accuracy"] for r in evals],
            "val_perplexities": [r["val_perplexity"] for r in evals],
            "elapsed_times": [r["elapsed_s"] / 60 for r in evals],
            "learning_rates": [r["lr_next"][first_group] for r in evals]}


def build_metrics(config: Mapping, facts: RunFacts, evals: Sequence[EvalRecord],
                  elapsed_s: float, steps: int, status: str, **extra: Any) -> RunRecord:
    """metrics.json from the run's config (RunConfig.to_dict()), its fixed facts, its eval
    records, and how far and how it ended; extra (error, ...) goes last."""
    # per-eval co-selection matrices would dominate the file: keep only the last one
    slim = [{**r, "routing": [{k: v for k, v in layer.items() if k != "coselection"}
                              for layer in r["routing"]]} for r in evals]
    last, best = (evals[-1], min(evals, key=lambda r: r["val_loss"])) if evals else (None, None)
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_config": _experiment_config(config),
        "final_metrics": _summary(last),
        "best_metrics": _summary(best),
        "total_time_minutes": elapsed_s / 60,
        "stopped_early": status == EARLY_STOPPED,
        "actual_steps": steps,
        "history": _history(evals),
        "status": status,
        **facts,
        "finished_at": _now() if status != RUNNING else None,
        "evals": slim,
        "final_routing": last["routing"] if last else None,
        **extra,
    }


def failure_record(config: Mapping, config_hash: str, seed: int, run_dir: Path, error: str,
                   previous: Mapping | None = None, status: str = FAILED,
                   **extra: Any) -> RunRecord:
    """metrics.json of a run that failed (or was interrupted) outside training: what training
    recorded of this run (previous, when it is this run's) with the status and error, else
    an empty record in the same format, so that every reader lists it."""
    base = dict(previous) if is_this_run(previous, config_hash, seed) else build_metrics(
        config, run_facts(config=dict(config), run_dir=str(run_dir)), [], 0.0, 0, status)
    return {**base, "status": status, "error": error, "seed": seed,
            "config_hash": config_hash, "finished_at": _now(), **extra}
