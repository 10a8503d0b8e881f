"""What the reference study's recorded files show, and what they cannot.

Every finding here is computed from its metrics files: the recorded steps against the
configured ones, the logged LR trace (where it peaks, where it ends, which experiments
share it), and each curve's rise against that curve's own noise. Facts that the files
cannot show are `PRIORS`: printed only as such, with where they come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from moe_core.analysis.effects import format_p
from moe_core.analysis.inflection import INFLECTION, curve_rise, window_size
from moe_core.analysis.results import REFERENCE, UNREADABLE, Results

# Known from the reference implementation's source code, not from its files (this
# project's reference notes, ORIGINAL.md "Defects"); the report labels them so.
PRIORS = {
    "load_balancing_weight": (
        "the configured load_balancing_weight never reached the MoE layers: every layer used "
        "its default 0.01, so lower_lb_weight and no_lb ran as repeats of the baseline "
        "(known from the reference's source code, ORIGINAL.md defect 1; its metrics files "
        "record only the configured value)"),
    "seeds": (
        "each experiment ran once, with seed 42 (ORIGINAL.md: the reference's recipe); the "
        "files hold no seed and no per-sequence losses"),
}


@dataclass(frozen=True)
class ReferenceFindings:
    runs: pd.DataFrame  # one row per reference run: rise, its p-value, verdict, LR facts
    facts: list[str]  # sentences computed from the files
    priors: list[str]  # labelled facts from outside the files


def end_window_se(sd: float, phi: float, window: int) -> float:
    """The SE of the mean of `window` consecutive values of an AR(1) series (marginal sd,
    lag-1 correlation phi): its evals are correlated, so the mean is noisier than
    sd / sqrt(window)."""
    if not (math.isfinite(sd) and math.isfinite(phi)):
        return float("nan")
    lags = np.arange(1, window)
    factor = 1 + 2 * np.sum((1 - lags / window) * phi**lags)
    return float(sd * math.sqrt(factor / window))


def _lr_facts(evals: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run_id, part in evals.groupby("run_id", sort=False):
        part = part.sort_values("step").dropna(subset=["lr"])
        if part.empty:
            continue
        lr = part["lr"].to_numpy(float)
        peak = float(lr.max())
        rows.append({"run_id": run_id, "peak_lr": peak,
                     "peak_step": int(part["step"].iloc[int(np.argmax(lr >= peak))]),
                     "end_lr_fraction": float(lr[-1] / peak) if peak > 0 else float("nan"),
                     "lr_trace": tuple(np.round(lr, 12))})
    return pd.DataFrame(rows)


def analyse_reference(results: Results) -> ReferenceFindings | None:
    """The reference's runs as one curve each: rise, noise from the curve, LR facts."""
    runs = results.runs[(results.runs["source"] == REFERENCE)
                        & (results.runs["status"] != UNREADABLE)]
    if runs.empty:
        return None
    evals = results.evals[results.evals["source"] == REFERENCE]
    rows = []
    for _, run in runs.iterrows():
        curve = evals[evals["run_id"] == run["run_id"]].sort_values("step")
        found = curve_rise(curve["step"].to_numpy(), curve["val_loss"].to_numpy())
        rows.append({"run_id": run["run_id"], "experiment": run["experiment"],
                     "steps": curve["step"].to_numpy(), "loss": curve["val_loss"].to_numpy(),
                     "max_steps": run["max_steps"], "actual_steps": run["actual_steps"],
                     "evals": len(curve), "final_loss": run["final_loss"],
                     "end_loss": found.end_loss, "low_loss": found.low_loss,
                     "low_step": found.low_start_step, "rise": found.rise,
                     "rise_p": found.p_value, "verdict": found.verdict,
                     "end_se": end_window_se(found.wander_sd, found.wander_autocorrelation,
                                             found.window),
                     "stopped_early": run["stopped_early"]})
    table = pd.DataFrame(rows).merge(_lr_facts(evals), on="run_id", how="left")
    return ReferenceFindings(table, _facts(table), list(PRIORS.values()))


BUMP_EVALS = 5  # a short rise: at most this many evals from a local minimum


def _short_rises(loss: np.ndarray) -> np.ndarray:
    """For each eval, how far the curve climbs within the next BUMP_EVALS evals."""
    ahead = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([loss, np.full(BUMP_EVALS, np.nan)]), BUMP_EVALS + 1)[:loss.size]
    return np.nanmax(ahead, axis=1) - loss


def _end_bump(table: pd.DataFrame, run_id: str) -> str | None:
    """How the curve's last short rise compares with the short rises before its last window
    (a recurring bump is not a turn of the trend)."""
    row = table[table["run_id"] == run_id].iloc[0]
    if not isinstance(row.get("loss"), np.ndarray):
        return None
    loss, steps = row["loss"], row["steps"]
    window = window_size(loss.size)
    rises = _short_rises(loss)
    last = loss.size - 1 - BUMP_EVALS
    earlier = rises[: loss.size - window - BUMP_EVALS]
    if earlier.size == 0 or last < 0:
        return None
    end_rise = float(loss[-1] - loss[last:].min())
    top = int(np.argmax(earlier))
    return (f"Over its last {BUMP_EVALS} evals it climbs {end_rise:.4f} nats; before its last "
            f"window the curve already climbed up to {earlier[top]:.4f} within "
            f"{BUMP_EVALS} evals (from step {int(steps[top])}), and fell again.")


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _facts(table: pd.DataFrame) -> list[str]:
    facts = [f"{len(table)} runs, one per experiment; each curve has "
             f"{int(table['evals'].median())} evals."]
    base = table[table["experiment"] == "baseline"]
    if len(base):
        b = base.iloc[0]
        window = window_size(int(b["evals"]))
        if b["rise"] <= 0:
            facts.append(f"The baseline's last {window} evals (mean {b['end_loss']:.4f} nats) "
                         f"are its lowest {window}-eval window: by that measure its loss has "
                         "not turned up.")
        else:
            state = ("rises beyond its own noise" if b["verdict"] == INFLECTION
                     else "does not rise beyond its own noise")
            facts.append(
                f"The baseline {state}: its last {window} evals average {b['end_loss']:.4f} "
                f"nats, {b['rise']:.4f} above its lowest window (from step "
                f"{int(b['low_step'])}); a flat curve with the same wander rises that much "
                f"with probability {format_p(b['rise_p'])}.")
        bump = _end_bump(table, b["run_id"])
        if bump is not None:
            facts.append(bump)
        others = table[table["experiment"] != "baseline"]
        noise = np.hypot(others["end_se"], b["end_se"]) * 1.959963984540054
        differs = sorted(others.loc[(others["end_loss"] - b["end_loss"]).abs() > noise,
                                    "experiment"])
        within = sorted(set(others["experiment"]) - set(differs))
        if differs:
            verb = "ends" if len(differs) == 1 else "end"
            facts.append(
                f"{_listing(differs)} {verb} more than the curves' own noise (95%) away from "
                "the baseline; with one run each, run-to-run variation is unknown, so the "
                "difference cannot be attributed to the experiment, and nothing is ranked.")
        if within:
            verb = "ends" if len(within) == 1 else "end"
            facts.append(f"{_listing(within)} {verb} within the curves' own noise of the "
                         "baseline: indistinguishable from it.")
    short = table[(table["experiment"] == "short_run")]
    if len(short):
        s = short.iloc[0]
        facts.append(f"short_run records max_steps {s['max_steps']:.0f} and actual_steps "
                     f"{s['actual_steps']:.0f}: it ran as long as the baseline.")
    early = table[(table["experiment"] == "early_stopping")]
    if len(early) and not bool(early.iloc[0]["stopped_early"]):
        facts.append(f"early_stopping never stopped early: it ran all "
                     f"{early.iloc[0]['actual_steps']:.0f} steps.")
    if table["lr_trace"].notna().any():
        facts += _lr_sentences(table.dropna(subset=["lr_trace"]))
    return facts


def _lr_sentences(table: pd.DataFrame) -> list[str]:
    sentences = []
    groups = table.groupby("lr_trace", sort=False)["experiment"].apply(sorted)
    shared = [names for names in groups if len(names) > 1]
    for names in shared:
        sentences.append(f"{_listing(names)} logged identical LR traces.")
    decayed = table[table["peak_step"] > table["evals"].min()]
    for _, row in decayed.drop_duplicates("lr_trace").iterrows():
        sentences.append(
            f"{row['experiment']}'s logged LR peaks at step {row['peak_step']} "
            f"({100 * row['peak_step'] / row['actual_steps']:.0f}% of training) and ends at "
            f"{100 * row['end_lr_fraction']:.1f}% of its peak.")
    flat = sorted(table.loc[table["end_lr_fraction"] >= 0.999, "experiment"])
    if flat:
        sentences.append(f"{_listing(flat)} logged a constant LR.")
    return sentences
