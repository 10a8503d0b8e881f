"""Every metrics.json under some folders, ours or the reference framework's, as tidy tables.

    runs          one row per run: identity (experiment, condition, arm, variant, group),
                  status, final/best/degradation, the window rise and its per-run verdict
    evals         one row per eval: losses, LR applied per group, epochs, routing summary
    val_sequences run_id -> (evals, val sequences) array of each val sequence's loss
    routing       one row per (run, eval, layer, expert): the expert's share of tokens
    layer_routing one row per (run, eval, layer): max violation, router entropy, aux terms
    coselection   one row per (run, layer, expert i, expert j) at the end of training

A file that cannot be read becomes a `runs` row with status `unreadable` and the error;
it never stops the others from loading. A run is (config hash, seed): a second copy of the
same run (a suite folder read twice, a run copied) becomes a `duplicate` row that names the
copy counted, so no run is counted twice. Runs of one arm with different configs (another
`--set`) are different groups: an `ArmGroup` of the arm and what differs (the `variant`
column), whose label (the `group` column) is a key to show, never text to parse back.
The format of a metrics.json is moe_core.record.metrics_json's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moe_core.analysis.inflection import curve_rise
from moe_core.analysis.routing import routing_entropy
from moe_core.config.run_config import arm_name, split_arm
from moe_core.errors import UserInputError
from moe_core.record.metrics_json import (
    COMPLETED,
    EARLY_STOPPED,
    METRICS_FILE,
    RunRecord,
    evals_of,
    is_finished_status,
    is_our_format,
    parse_metrics,
)

OURS = "ours"
REFERENCE = "reference"
UNREADABLE = "unreadable"
DUPLICATE = "duplicate"
# config keys that name or describe a run without changing what it computes
COSMETIC_KEYS = ("name", "description", "condition", "checkpoint_every_evals",
                 "save_best_checkpoint", "keep_weights")
# the reference's `_seed_run` folder: the run that first showed the inflection
REFERENCE_SEED_RUN = "seed_run"

RUN_COLUMNS = [
    "run_id", "experiment", "condition", "arm", "variant", "group", "seed", "source", "status",
    "preset", "config_hash", "val_sha", "description",
    "final_loss", "final_accuracy", "best_loss", "best_step", "best_accuracy", "degradation",
    "degradation_pct", "final_loss_se", "low_loss", "low_step", "end_loss", "rise", "rise_pct",
    "rise_p", "rise_val_se", "wander_sd", "inflection", "onset_step", "actual_steps",
    "max_steps", "stopped_early", "time_min", "epochs_seen", "final_gap", "final_train_loss",
    "bayes_floor", "run_dir", "error",
]
EVAL_COLUMNS = [
    "run_id", "experiment", "condition", "arm", "seed", "source", "step", "fraction",
    "val_loss", "val_loss_se", "val_accuracy", "val_perplexity", "elapsed_min", "lr",
    "train_loss", "train_subset_loss", "aux_loss", "grad_norm", "epochs_seen", "tokens_seen",
    "max_violation", "router_entropy",
]
IDENTITY = ["run_id", "experiment", "condition", "arm", "seed", "source"]


@dataclass(frozen=True)
class ArmGroup:
    """The runs of one arm that share a config: the arm and, where the arm holds runs of
    several configs, what differs (`dropout=0.0`; empty otherwise)."""

    arm: str
    variant: str = ""

    @property
    def label(self) -> str:
        """`baseline`, or `baseline [dropout=0.0]`: the group's name in tables and figures."""
        return f"{self.arm} [{self.variant}]" if self.variant else self.arm

    @property
    def experiment(self) -> str:
        """The arm's experiment (`no_lb` of `no_lb@reference_lr`)."""
        return split_arm(self.arm)[0]

    @property
    def condition(self) -> str:
        """The arm's condition (`reference_lr` of `no_lb@reference_lr`; empty for none)."""
        return split_arm(self.arm)[1]


@dataclass
class Results:
    """The tidy tables of a set of runs (see the module docstring for their rows)."""

    runs: pd.DataFrame
    evals: pd.DataFrame
    routing: pd.DataFrame = field(default_factory=pd.DataFrame)
    layer_routing: pd.DataFrame = field(default_factory=pd.DataFrame)
    coselection: pd.DataFrame = field(default_factory=pd.DataFrame)
    environments: dict[str, dict] = field(default_factory=dict)
    val_sequences: dict[str, np.ndarray] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)

    @property
    def groups(self) -> dict[str, ArmGroup]:
        """Each group label of the runs table -> its arm and variant."""
        runs = self.runs
        if runs.empty:
            return {}
        variants = runs["variant"] if "variant" in runs else pd.Series("", index=runs.index)
        return {label: ArmGroup(arm, variant if isinstance(variant, str) else "")
                for label, arm, variant in zip(runs["group"], runs["arm"], variants,
                                               strict=True)}

    def coselection_matrix(self, run_id: str) -> np.ndarray:
        """End-of-training co-selection shares of one run: (layers, E, E)."""
        part = self.coselection[self.coselection["run_id"] == run_id] \
            if len(self.coselection) else self.coselection
        if part.empty:
            raise UserInputError(f"run {run_id!r} has no co-selection matrix (reference runs and "
                                 "runs without an eval record none)")
        layers = int(part["layer"].max()) + 1
        experts = int(part["expert_i"].max()) + 1
        matrix = np.full((layers, experts, experts), np.nan)
        matrix[part["layer"], part["expert_i"], part["expert_j"]] = part["share"]
        return matrix

    def of_source(self, source: str) -> Results:
        """The same tables restricted to one source ("ours" or "reference")."""
        keep = set(self.runs.loc[self.runs["source"] == source, "run_id"])

        def pick(df: pd.DataFrame) -> pd.DataFrame:
            return df[df["run_id"].isin(keep)].reset_index(drop=True) if len(df) else df
        def mine(mapping: dict) -> dict:
            return {k: v for k, v in mapping.items() if k in keep}
        return Results(pick(self.runs), pick(self.evals), pick(self.routing),
                       pick(self.layer_routing), pick(self.coselection),
                       mine(self.environments), mine(self.val_sequences), mine(self.configs))


# ---------------------------------------------------------------- reading files


def find_metrics_files(folder: str | Path) -> list[Path]:
    """Every metrics.json under folder (or folder itself when it is one), sorted."""
    path = Path(folder)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserInputError(f"results folder {path} does not exist; pass a folder that holds "
                             "run folders with metrics.json files (e.g. runs/study)")
    return sorted(path.rglob(METRICS_FILE))


def _arm_from_path(path: Path) -> str:
    """runs/<suite>/<arm>/seed<k>/metrics.json -> arm; else the folder name."""
    folder = path.parent
    if re.fullmatch(r"seed\d+", folder.name) and folder.parent.name:
        return folder.parent.name
    name = folder.name
    return REFERENCE_SEED_RUN if name == "_seed_run" else name.lstrip("_")


def _experiment_from_path(path: Path) -> str:
    return split_arm(_arm_from_path(path))[0]


def _seed_from_path(path: Path) -> int | None:
    match = re.fullmatch(r"seed(\d+)", path.parent.name)
    return int(match.group(1)) if match else None


def _number(value: Any) -> float:
    """A JSON number as float; None and non-numbers become NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _first_group_lr(lr: Any) -> float:
    if isinstance(lr, dict) and lr:
        return _number(next(iter(lr.values())))
    return _number(lr)


def _our_evals(metrics: RunRecord, max_steps: float) -> pd.DataFrame:
    rows = []
    for record in evals_of(metrics):
        routing = record.get("routing") or []
        lr = record.get("lr") or {}
        rows.append({
            "step": record["step"],
            "fraction": record["step"] / max_steps if max_steps else float("nan"),
            "val_loss": _number(record.get("val_loss")),
            "val_loss_se": _number(record.get("val_loss_se")),
            "val_accuracy": _number(record.get("val_accuracy")),
            "val_perplexity": _number(record.get("val_perplexity")),
            "elapsed_min": _number(record.get("elapsed_s")) / 60,
            "lr": _first_group_lr(lr),
            **{f"lr_{group}": _number(value) for group, value in lr.items()},
            "train_loss": _number(record.get("train_loss")),
            "train_subset_loss": _number(record.get("train_subset_loss")),
            "aux_loss": _number(record.get("aux_loss")),
            "grad_norm": _number(record.get("grad_norm")),
            "epochs_seen": _number(record.get("epochs_seen")),
            "tokens_seen": _number(record.get("tokens_seen")),
            "max_violation": float(np.nanmean([_number(r.get("max_violation")) for r in routing]))
            if routing else float("nan"),
            "router_entropy": float(np.nanmean([_number(r.get("router_entropy"))
                                                for r in routing]))
            if routing else float("nan"),
        })
    return pd.DataFrame(rows)


def _reference_evals(metrics: RunRecord, max_steps: float) -> pd.DataFrame:
    """The reference's parallel history lists as eval rows (its LR is the first group's)."""
    history = metrics.get("history") or {}
    steps = history.get("steps") or []
    n = len(steps)

    def column(name: str) -> list[float]:
        values = list(history.get(name) or [])
        if len(values) != n:
            raise UserInputError(f"history.{name} has {len(values)} values but history.steps "
                                 f"has {n}")
        return [_number(v) for v in values]

    frame = pd.DataFrame({
        "step": steps,
        "val_loss": column("val_losses"),
        "val_accuracy": column("val_accuracies"),
        "val_perplexity": column("val_perplexities"),
        "elapsed_min": column("elapsed_times"),
        "lr": column("learning_rates") if "learning_rates" in history else [np.nan] * n,
    })
    frame["fraction"] = frame["step"] / max_steps if max_steps else np.nan
    return frame


def _routing_tables(metrics: RunRecord, identity: dict, max_steps: float
                    ) -> tuple[list[dict], list[dict], list[dict]]:
    """(expert rows, layer rows, final co-selection rows) of one of our runs."""
    experts, layers, coselection = [], [], []
    evals = evals_of(metrics)
    for record in evals:
        step = record["step"]
        where = {**identity, "step": step,
                 "fraction": step / max_steps if max_steps else float("nan")}
        for layer, stats in enumerate(record.get("routing") or []):
            load = np.asarray(stats.get("tokens_per_expert") or [], dtype=float)
            total = load.sum()
            probs = stats.get("mean_router_prob") or [float("nan")] * load.size
            for expert, count in enumerate(load):
                experts.append({**where, "layer": layer, "expert": expert,
                                "load_share": count / total if total > 0 else float("nan"),
                                "router_prob": _number(probs[expert])})
            layers.append({**where, "layer": layer,
                           "max_violation": _number(stats.get("max_violation")),
                           "router_entropy": _number(stats.get("router_entropy")),
                           "load_entropy_fraction": float(routing_entropy(load)[1])
                           if total > 0 else float("nan"),
                           "balance_loss": _number(stats.get("balance_loss")),
                           "z_loss": _number(stats.get("z_loss"))})
    final_step = evals[-1]["step"] if evals else None
    for layer, stats in enumerate(metrics.get("final_routing") or []):
        for i, row in enumerate(stats.get("coselection") or []):
            for j, share in enumerate(row):
                coselection.append({**identity, "step": final_step, "layer": layer,
                                    "expert_i": i, "expert_j": j, "share": _number(share)})
    return experts, layers, coselection


def _per_sequence(metrics: RunRecord) -> np.ndarray | None:
    """(evals, sequences) val losses of each sequence at each eval, when every eval has them."""
    rows = [record.get("val_loss_per_sequence") for record in evals_of(metrics)]
    if not rows or any(not isinstance(r, list) or not r for r in rows) \
            or len({len(r) for r in rows}) != 1:
        return None
    return np.asarray(rows, dtype=float)


def _inflection_columns(evals: pd.DataFrame, sequences: np.ndarray | None) -> dict[str, Any]:
    """Best/final/degradation, the window rise and the run's verdict, from the finite part
    of the curve (a diverged run is analysed up to its first non-finite eval)."""
    loss = evals["val_loss"].to_numpy(float) if len(evals) else np.empty(0)
    finite = int(np.argmin(np.isfinite(loss))) if not np.all(np.isfinite(loss)) else loss.size
    part = evals.iloc[:finite]
    out: dict[str, Any] = {}
    if part.empty:
        return out
    best = part.loc[part["val_loss"].idxmin()]
    out.update(best_loss=best["val_loss"], best_step=int(best["step"]),
               best_accuracy=best["val_accuracy"],
               degradation=part["val_loss"].iloc[-1] - best["val_loss"],
               degradation_pct=100 * (part["val_loss"].iloc[-1] - best["val_loss"])
               / best["val_loss"])
    try:
        found = curve_rise(part["step"].to_numpy(), part["val_loss"].to_numpy(),
                           sequences[:finite] if sequences is not None else None)
    except UserInputError:
        return out
    out.update(low_loss=found.low_loss, low_step=found.low_start_step, end_loss=found.end_loss,
               rise=found.rise, rise_pct=found.rise_pct, rise_p=found.p_value,
               rise_val_se=found.val_se, wander_sd=found.wander_sd, inflection=found.verdict,
               onset_step=found.onset_step)
    return out


def _run_identity(metrics: RunRecord, path: Path, ours: bool) -> tuple[str, str, Any, Any]:
    """Experiment, condition, seed and status of one metrics.json; the reference's files name
    their experiment only by their folder and record neither seed nor status."""
    if not ours:
        return (_experiment_from_path(path), "", None,
                EARLY_STOPPED if metrics.get("stopped_early") else COMPLETED)
    config = metrics.get("config") or {}
    experiment = (config.get("name") or (metrics.get("experiment_config") or {}).get("name")
                  or _experiment_from_path(path))
    return experiment, config.get("condition") or "", metrics.get("seed"), metrics.get("status")


def _read_run(metrics: RunRecord, path: Path, run_id: str, force_reference: bool
              ) -> dict[str, Any]:
    """Everything one metrics.json gives: run row, eval rows, routing rows, environment."""
    ours = is_our_format(metrics) and not force_reference
    exp_config = metrics.get("experiment_config") or {}
    config = metrics.get("config") or {}
    experiment, condition, seed, status = _run_identity(metrics, path, ours)
    max_steps = _number(config.get("max_steps", exp_config.get("max_steps")))
    identity = {"run_id": run_id, "experiment": experiment, "condition": condition,
                "arm": arm_name(experiment, condition),
                "seed": seed if seed is not None else float("nan"),
                "source": OURS if ours else REFERENCE}
    evals = _our_evals(metrics, max_steps) if ours and metrics.get("evals") \
        else _reference_evals(metrics, max_steps)
    for key, value in reversed(identity.items()):
        evals.insert(0, key, value)
    evals = evals.reindex(columns=EVAL_COLUMNS + sorted(c for c in evals.columns
                                                        if c.startswith("lr_")))

    final = metrics.get("final_metrics") or {}
    last = evals.iloc[-1] if len(evals) else None
    sequences = _per_sequence(metrics) if ours else None
    val_stats = ((metrics.get("data") or {}).get("stats") or {}).get("val") or {}
    run = {
        **identity,
        "group": identity["arm"],
        "status": status,
        "preset": config.get("preset"),
        "config_hash": metrics.get("config_hash"),
        "val_sha": val_stats.get("windows_sha"),
        "description": exp_config.get("description") or config.get("description"),
        "final_loss": _number(final.get("val_loss")),
        "final_accuracy": _number(final.get("val_accuracy")),
        "final_loss_se": _number(final.get("val_loss_se")),
        "actual_steps": metrics.get("actual_steps"),
        "max_steps": max_steps,
        "stopped_early": bool(metrics.get("stopped_early")),
        "time_min": _number(metrics.get("total_time_minutes")),
        "epochs_seen": last["epochs_seen"] if last is not None else float("nan"),
        "final_gap": last["val_loss"] - last["train_subset_loss"] if last is not None
        else float("nan"),
        "final_train_loss": last["train_subset_loss"] if last is not None else float("nan"),
        "bayes_floor": _number(metrics.get("bayes_floor")),
        "run_dir": str(path.parent),
        "error": metrics.get("error"),
        **_inflection_columns(evals, sequences),
    }
    experts, layers, coselection = _routing_tables(metrics, identity, max_steps) if ours \
        else ([], [], [])
    environment = {"environment": metrics.get("environment"),
                   "config_hash": metrics.get("config_hash"),
                   "data": metrics.get("data"), "parameter_counts": metrics.get("parameter_counts")}
    return {"run": run, "evals": evals, "routing": experts, "layer_routing": layers,
            "coselection": coselection, "environment": environment, "sequences": sequences,
            "config": config if ours else dict(exp_config)}


def _unique_id(base: str, taken: set[str]) -> str:
    run_id, n = base, 2
    while run_id in taken:
        run_id, n = f"{base}#{n}", n + 1
    taken.add(run_id)
    return run_id


def _base_id(path: Path, metrics: RunRecord | None, force_reference: bool) -> str:
    """<arm>/seed<k> for our runs, "<experiment> (reference)" for the reference's."""
    if metrics is not None and is_our_format(metrics) and not force_reference:
        config = metrics.get("config") or {}
        arm = arm_name(config.get("name") or _experiment_from_path(path),
                       config.get("condition") or "")
        return f"{arm}/seed{metrics.get('seed')}"
    seed = _seed_from_path(path)
    if force_reference or metrics is not None:
        return f"{_experiment_from_path(path)} (reference)"
    return f"{_arm_from_path(path)}/seed{seed}" if seed is not None else _arm_from_path(path)


def load_runs(*dirs: str | Path, reference_dirs: tuple | list = ()) -> Results:
    """Read every metrics.json under dirs (ours or reference format) and reference_dirs
    (always labelled reference); comparison_summary.json and other files are ignored."""
    sources = [(d, False) for d in dirs] + [(d, True) for d in reference_dirs]
    runs, evals, routing, layer_routing, coselection = [], [], [], [], []
    environments: dict[str, dict] = {}
    sequences: dict[str, np.ndarray] = {}
    configs: dict[str, dict] = {}
    taken: set[str] = set()
    for folder, force_reference in sources:
        for path in find_metrics_files(folder):
            metrics, run_id = None, None
            try:
                metrics = parse_metrics(path)
                run_id = _unique_id(_base_id(path, metrics, force_reference), taken)
                read = _read_run(metrics, path, run_id, force_reference)
            except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                run_id = run_id or _unique_id(_base_id(path, None, force_reference), taken)
                # half-written or corrupted: list it, keep going
                arm = _arm_from_path(path)
                runs.append({"run_id": run_id, "experiment": split_arm(arm)[0],
                             "condition": split_arm(arm)[1], "arm": arm, "group": arm,
                             "seed": _seed_from_path(path) if _seed_from_path(path) is not None
                             else float("nan"),
                             "source": REFERENCE if force_reference else OURS,
                             "status": UNREADABLE, "run_dir": str(path.parent),
                             "error": f"{path}: {type(e).__name__}: {e}"})
                continue
            runs.append(read["run"])
            evals.append(read["evals"])
            routing += read["routing"]
            layer_routing += read["layer_routing"]
            coselection += read["coselection"]
            environments[run_id] = read["environment"]
            configs[run_id] = read["config"]
            if read["sequences"] is not None:
                sequences[run_id] = read["sequences"]
    runs_frame = _mark_duplicates(pd.DataFrame(runs).reindex(columns=RUN_COLUMNS))
    runs_frame["variant"] = _variants(runs_frame, configs)
    runs_frame["group"] = [ArmGroup(arm, variant).label for arm, variant
                           in zip(runs_frame["arm"], runs_frame["variant"], strict=True)]
    evals_frame = pd.concat([e for e in evals if len(e)], ignore_index=True) \
        if any(len(e) for e in evals) else pd.DataFrame(columns=EVAL_COLUMNS)
    return Results(runs_frame, evals_frame, pd.DataFrame(routing), pd.DataFrame(layer_routing),
                   pd.DataFrame(coselection), environments, sequences, configs)


def _mark_duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """The second and later copies of one run (same source, config hash and seed) become
    status `duplicate`, naming the copy that counts: the finished one, else the first."""
    runs = runs.copy()
    ours = runs[(runs["source"] == OURS) & runs["config_hash"].notna()]
    for _, copies in ours.groupby(["config_hash", "seed"], sort=False):
        if len(copies) < 2:
            continue
        finished = copies[copies["status"].map(is_finished_status)]
        kept = (finished if len(finished) else copies).iloc[0]
        for index, row in copies.drop(index=kept.name).iterrows():
            runs.loc[index, "error"] = (f"the same config and seed as {kept['run_dir']} "
                                        f"({kept['status']}), which is counted instead"
                                        + (f"; this copy was {row['status']}"
                                           if row["status"] != kept["status"] else ""))
            runs.loc[index, "status"] = DUPLICATE
    return runs


def _variants(runs: pd.DataFrame, configs: dict[str, dict]) -> pd.Series:
    """Empty, or where one arm holds runs of several configs, what differs (`dropout=0.0`),
    so that different configs are never pooled as seeds."""
    variants = pd.Series("", index=runs.index, dtype=object)
    counted = runs[(runs["source"] == OURS) & (runs["status"] != DUPLICATE)
                   & runs["config_hash"].notna()]
    for _, part in counted.groupby("arm", sort=False):
        hashes = list(dict.fromkeys(part["config_hash"]))
        if len(hashes) < 2:
            continue
        first = {h: configs.get(part.loc[part["config_hash"] == h, "run_id"].iloc[0], {})
                 for h in hashes}
        keys = sorted({k for c in first.values() for k in c if k not in COSMETIC_KEYS
                       and len({repr(v.get(k)) for v in first.values()}) > 1})
        for h, config in first.items():
            what = ", ".join(f"{k}={config.get(k)}" for k in keys) or f"config {h}"
            variants[part.index[part["config_hash"] == h]] = what
    return variants
