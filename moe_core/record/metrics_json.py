"""A run folder's files: the name and format of metrics.json, its statuses, atomic writes,
the record of a run that failed before training could write one, and which run a folder
belongs to. The only module that knows the format (no torch here).

metrics.json is a superset of the reference framework's format (experiment_config,
final_metrics, best_metrics, total_time_minutes, stopped_early, actual_steps, history of
parallel lists in its units), so tools written for the reference read ours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moe_core.errors import UserInputError

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
RUNNING, COMPLETED, EARLY_STOPPED = "running", "completed", "early_stopped"
DIVERGED, FAILED, INTERRUPTED = "diverged", "failed", "interrupted"
FINISHED = (COMPLETED, EARLY_STOPPED)  # ended normally: a result to count


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write to a temporary sibling, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True))
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> dict | None:
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


def is_finished(metrics: Mapping | None, config_hash: str, seed: int) -> bool:
    """The metrics are of this run (config hash and seed) and it ended normally."""
    return bool(metrics) and metrics.get("status") in FINISHED \
        and metrics.get("config_hash") == config_hash and metrics.get("seed") == seed


def other_run(metrics: Mapping | None, config_hash: str, seed: int) -> str | None:
    """A description of the run the metrics belong to when it is not this one, else None."""
    if not metrics or (metrics.get("config_hash"), metrics.get("seed")) == (config_hash, seed):
        return None
    return (f"{metrics.get('status')}, config {metrics.get('config_hash')}, seed "
            f"{metrics.get('seed')}")


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_metrics(config: Mapping, meta: Mapping, evals: Sequence[dict], elapsed_s: float,
                  steps: int, status: str, **extra: Any) -> dict:
    """metrics.json from the run's config (RunConfig.to_dict()), its fixed facts (seed, hash,
    environment, data, ...), its eval records, and how far and how it ended."""
    # per-eval co-selection matrices would dominate the file: keep only the last one
    slim = [{**r, "routing": [{k: v for k, v in layer.items() if k != "coselection"}
                              for layer in r["routing"]]} for r in evals]
    last, best = (evals[-1], min(evals, key=lambda r: r["val_loss"])) if evals else (None, None)
    first_group = next(iter(evals[0]["lr_next"])) if evals else None

    def summary(r: dict | None) -> dict | None:
        return None if r is None else {
            "val_loss": r["val_loss"], "val_accuracy": r["val_accuracy"],
            "val_perplexity": r["val_perplexity"], "val_loss_se": r["val_loss_se"],
            "step": r["step"], "train_subset_loss": r["train_subset_loss"]}
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_config": {
            key: config[name] for key, name in (
                ("name", "name"), ("description", "description"), ("max_steps", "max_steps"),
                ("lr_schedule_type", "lr_schedule"), ("use_early_stopping", "early_stopping"),
                ("load_balancing_weight", "load_balancing_weight"), ("dropout", "dropout"),
                ("batch_size", "batch_size"), ("num_experts", "num_experts"),
                ("expert_top_k", "top_k"))},
        "final_metrics": summary(last),
        "best_metrics": summary(best),
        "total_time_minutes": elapsed_s / 60,
        "stopped_early": status == EARLY_STOPPED,
        "actual_steps": steps,
        "history": {
            "steps": [r["step"] for r in evals],
            "val_losses": [r["val_loss"] for r in evals],
            "val_accuracies": [r["val_accuracy"] for r in evals],
            "val_perplexities": [r["val_perplexity"] for r in evals],
            "elapsed_times": [r["elapsed_s"] / 60 for r in evals],
            "learning_rates": [r["lr_next"][first_group] for r in evals],
        },
        "status": status,
        **meta,
        "finished_at": _now() if status != RUNNING else None,
        "evals": slim,
        "final_routing": last["routing"] if last else None,
        **extra,
    }


def failure_record(config: Mapping, config_hash: str, seed: int, run_dir: Path, error: str,
                   previous: Mapping | None = None, status: str = FAILED,
                   **extra: Any) -> dict:
    """metrics.json of a run that failed (or was interrupted) outside training: what training
    recorded of this run (previous, when it is this run's) with the status and error, else
    an empty record in the same format, so that every reader lists it."""
    ours = bool(previous) and other_run(previous, config_hash, seed) is None
    base = dict(previous) if ours else build_metrics(
        config, {"config": dict(config), "run_dir": str(run_dir)}, [], 0.0, 0, status)
    return {**base, "status": status, "error": error, "seed": seed,
            "config_hash": config_hash, "finished_at": _now(), **extra}
