"""The inflection report: its numbers and sentences, built from `moe_core.results` tables
with `moe_core.diagnostics`, and its rendering (papermill, then HTML without code).

Every sentence the report prints is generated here from the tables, so the report
never says more than the runs at hand support.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moe_core import diagnostics as dx
from moe_core.config import PARAMETERS_DIR
from moe_core.errors import UserInputError
from moe_core.results import (
    FINISHED,
    METRICS_FILE,
    OURS,
    REFERENCE,
    UNREADABLE,
    Results,
    finite_or_none,
    sort_experiments,
)

REPO_ROOT = PARAMETERS_DIR.parent
REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "inflection_report.ipynb"
DEFAULT_TITLE = "Why does the MoE validation loss turn up at the end of training?"
BASELINE = "baseline"
# the reference's own LR schedule (its horizon defect): the configuration whose rise was seen
REFERENCE_SCHEDULE = "reference_lr_horizon"
EFFECT_METRICS = ("final_loss", "best_loss", "degradation")
SE_COLUMNS = {"final_loss": "final_loss_se", "best_loss": "best_loss_se",
              "degradation": "degradation_se"}
HYPOTHESES = ("overfitting", "the LR schedule", "load balancing")
# JupyterLab's HTML look without the scripts it fetches from CDNs (require.js, MathJax,
# Mermaid, widgets): the report has no math or widgets and must open offline
SELF_CONTAINED_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


class ReportError(UserInputError):
    """The report notebook failed; the message names the notebook, the cell and the error."""


# ---------------------------------------------------------------- paths


def resolve_dirs(dirs: Sequence[str | Path] | str | Path) -> list[Path]:
    """Folders as absolute paths; relative ones are taken from the repository root."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    return [Path(d) if Path(d).is_absolute() else REPO_ROOT / d for d in dirs]


def dirs_from_environment(variable: str, default: Sequence[str]) -> list[str]:
    """An os.pathsep-separated list from an environment variable, else the default."""
    value = os.environ.get(variable, "")
    return [part for part in value.split(os.pathsep) if part] or list(default)


# ---------------------------------------------------------------- tables the report shows


def finished_runs(results: Results, source: str = OURS) -> pd.DataFrame:
    """Runs of one source that ended normally (completed or early-stopped)."""
    runs = results.runs
    return runs[(runs["source"] == source) & runs["status"].isin(FINISHED)].reset_index(drop=True)


def problem_runs(results: Results) -> pd.DataFrame:
    """Runs that did not end normally, with their status and error."""
    runs = results.runs
    bad = runs[~runs["status"].isin(FINISHED)]
    return bad[["run_id", "experiment", "source", "status", "actual_steps", "error"]] \
        .reset_index(drop=True)


def styled_summary(table: pd.DataFrame) -> Any:
    """The summary table as a pandas Styler: no index, runs that did not finish in red."""
    def highlight(row: pd.Series) -> list[str]:
        bad = not any(status in str(row["status"]) for status in FINISHED) \
            or "," in str(row["status"])
        return ["color: #b00020; font-weight: bold" if bad else ""] * len(row)
    return table.style.hide(axis="index").apply(highlight, axis=1)


def inflection_table(results: Results) -> pd.DataFrame:
    """Per run: best and final loss, degradation in nats and noise units, onset, verdict."""
    columns = ["run_id", "experiment", "source", "best_step", "best_loss", "final_loss",
               "degradation", "degradation_z", "onset_step", "inflection"]
    runs = results.runs[results.runs["status"] != UNREADABLE]
    return runs[columns].reset_index(drop=True)


def environment_table(results: Results) -> pd.DataFrame:
    """Per run: config hash, preset, device, torch, data fingerprint and parameter count."""
    rows = []
    for run_id, info in results.environments.items():
        env = info.get("environment") or {}
        data = info.get("data") or {}
        counts = info.get("parameter_counts") if isinstance(info.get("parameter_counts"), dict) \
            else {}
        rows.append({"run_id": run_id, "config_hash": info.get("config_hash"),
                     "device": env.get("device_name") or env.get("device"),
                     "dtype": env.get("autocast_dtype"), "torch": env.get("torch"),
                     "python": env.get("python"), "threads": env.get("cpu_threads"),
                     "data": data.get("fingerprint"),
                     "parameters": counts.get("total"),
                     "active per token": counts.get("active_per_token")})
    # the reference recorded none of these
    return pd.DataFrame(rows).astype(object).fillna("not recorded")


# ---------------------------------------------------------------- sentences


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _per_experiment(runs: pd.DataFrame, metric: str) -> pd.Series:
    return runs.groupby("experiment")[metric].mean().dropna()


def typical_noise(runs: pd.DataFrame) -> float | None:
    """Difference of two final losses that val-set noise alone reaches one time in twenty
    (nats), from the runs' val-loss standard errors; None when none is recorded."""
    se = finite_or_none(runs["final_loss_se"].median()) if len(runs) else None
    return None if se is None else dx.Z_95 * math.sqrt(2.0) * se


def ranking_sentences(results: Results, source: str = OURS) -> list[str]:
    """Which experiment ends lowest and which reached the lowest loss at any eval, with the
    noise scale that decides whether the ranking means anything."""
    runs = finished_runs(results, source)
    if runs.empty:
        return ["No finished runs of ours to rank." if source == OURS
                else "No finished reference runs to rank."]
    final, best = _per_experiment(runs, "final_loss"), _per_experiment(runs, "best_loss")
    seeds = runs.groupby("experiment")["run_id"].count()
    lead = final.idxmin()
    sentences = [
        f"Lowest final val loss: {lead} ({_fmt(final[lead])} nats, "
        f"mean of {seeds[lead]} seed{'s' if seeds[lead] > 1 else ''})"
        + (f"; the runner-up {final.drop(lead).idxmin()} is "
           f"{_fmt(final.drop(lead).min() - final[lead])} nats behind."
           if len(final) > 1 else "."),
    ]
    best_lead = best.idxmin()
    best_step = runs[runs["experiment"] == best_lead]["best_step"].mean()
    sentences.append(f"Lowest loss at any eval: {best_lead} ({_fmt(best[best_lead])} nats, "
                     f"around step {best_step:.0f}).")
    if len(final) > 1:
        spread = float(final.max() - final.min())
        noise = typical_noise(runs)
        if noise is None:
            sentences.append(f"All final losses lie within {_fmt(spread)} nats; with no "
                             "recorded standard errors this spread cannot be compared with noise.")
        else:
            within = "within" if spread <= noise else "larger than"
            sentences.append(f"All final losses lie within {_fmt(spread)} nats, {within} the "
                             f"{_fmt(noise)} nats that val-set noise alone explains between two "
                             "runs (95%).")
    return sentences


def inflection_sentences(results: Results, source: str = OURS) -> list[str]:
    """One sentence per experiment: how many seeds show an inflection, where and how large."""
    runs = results.runs[(results.runs["source"] == source)
                        & (results.runs["status"] != UNREADABLE)]
    sentences = []
    for experiment in sort_experiments(runs["experiment"]):
        part = runs[runs["experiment"] == experiment]
        counts = part["inflection"].fillna("not analysed").value_counts()
        verdicts = ", ".join(f"{verdict} in {n} of {len(part)}" for verdict, n in counts.items())
        sentence = f"{experiment}: {verdicts} run{'s' if len(part) > 1 else ''}"
        turned = part[part["inflection"] == dx.INFLECTION]
        if not turned.empty:
            sentence += (f"; the loss turns up around step {turned['onset_step'].mean():.0f} "
                         f"and ends {_fmt(turned['degradation'].mean())} nats "
                         f"({turned['degradation_z'].mean():.1f} noise units) above its best")
        rows = part[part["status"] != "completed"]
        if not rows.empty:
            sentence += f" ({', '.join(rows['status'].astype(str))} run(s) included)"
        sentences.append(sentence + ".")
    return sentences or ["No runs to analyse."]


def seed_statistics(results: Results) -> pd.DataFrame:
    """Mean, sd and 95% interval over seeds of final loss, best loss and degradation."""
    runs = finished_runs(results)
    if runs.empty:
        return pd.DataFrame()
    return dx.seed_summary(runs, EFFECT_METRICS)


def effects(results: Results) -> pd.DataFrame:
    """Every experiment minus the baseline (ours), with intervals and verdicts."""
    runs = finished_runs(results)
    if runs.empty or BASELINE not in set(runs["experiment"]):
        return pd.DataFrame()
    return dx.effects_vs_baseline(runs, EFFECT_METRICS, baseline=BASELINE,
                                  se_columns=SE_COLUMNS)


def noise_sentences(results: Results) -> list[str]:
    """What the number of seeds allows: seed-level claims, or only the val-set noise scale."""
    runs = finished_runs(results)
    if runs.empty:
        return ["No finished runs of ours: nothing to say about run-to-run noise."]
    seeds = runs.groupby("experiment")["run_id"].count()
    sentences = [f"Effects are estimated with {dx.EFFECT_METHOD}."]
    single = sorted(seeds[seeds < 2].index)
    if single:
        noise = typical_noise(runs)
        sentences.append(
            f"{', '.join(single)} {'has' if len(single) == 1 else 'have'} one seed: no "
            "seed-level claim can be made about "
            f"{'it' if len(single) == 1 else 'them'}, since run-to-run variation is unknown."
            + (f" Val-set noise alone explains differences of final loss up to "
               f"{_fmt(noise)} nats between two runs (95%)." if noise is not None else ""))
    multi = sorted(seeds[seeds >= 2].index)
    if multi:
        sentences.append(f"{', '.join(multi)} {'has' if len(multi) == 1 else 'have'} "
                         f"{int(seeds[multi].min())} or more seeds: the intervals below are "
                         "over seeds.")
    return sentences


# ---------------------------------------------------------------- hypothesis evidence


def _verdicts_on(effect_table: pd.DataFrame, metric: str = "degradation") -> dict[str, str]:
    if effect_table.empty:
        return {}
    rows = effect_table[effect_table["metric"] == metric]
    return dict(zip(rows["experiment"], rows["verdict"], strict=True))


def _at_step(evals: pd.DataFrame, step: float, column: str) -> float | None:
    """A column of one run's evals, interpolated at `step`."""
    curve = evals.dropna(subset=[column]).sort_values("step")
    if curve.empty or step is None or not math.isfinite(step):
        return None
    return float(np.interp(step, curve["step"], curve[column]))


def _runs_of(results: Results, experiment: str) -> pd.DataFrame:
    runs = finished_runs(results)
    return runs[runs["experiment"] == experiment]


def _baseline_runs(results: Results) -> pd.DataFrame:
    return _runs_of(results, BASELINE)


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _onsets(results: Results) -> list[tuple[pd.DataFrame, float]]:
    """(evals, onset step) of each baseline run whose loss turned (not "no inflection")."""
    out = []
    for _, run in _baseline_runs(results).iterrows():
        if run["inflection"] in (dx.INFLECTION, dx.WITHIN_NOISE) and pd.notna(run["onset_step"]):
            out.append((results.evals[results.evals["run_id"] == run["run_id"]],
                        float(run["onset_step"])))
    return out


def _gap_growth(evals: pd.DataFrame) -> tuple[float, float] | None:
    """(growth of the val - train-subset gap from its minimum to the end, its noise)."""
    curve = evals.dropna(subset=["val_loss", "train_subset_loss"]).sort_values("step")
    if len(curve) < 2:
        return None
    gap = (curve["val_loss"] - curve["train_subset_loss"]).to_numpy()
    low = int(np.argmin(gap))
    se = curve["val_loss_se"].to_numpy()
    # both losses are means over same-sized splits, so each gap has ~sqrt(2) val SEs of noise
    noise = math.sqrt(2.0) * math.hypot(se[low], se[-1])
    return float(gap[-1] - gap[low]), float(noise)


def overfitting_evidence(results: Results, effect_table: pd.DataFrame | None = None
                         ) -> dx.OverfittingEvidence:
    """Gap growth, epochs at the onset, excess over the Bayes floor and the verdicts of the
    experiments that change data repetition or regularisation (baseline runs of ours)."""
    effect_table = effects(results) if effect_table is None else effect_table
    verdicts = _verdicts_on(effect_table)
    base = _baseline_runs(results)
    growth = [_gap_growth(results.evals[results.evals["run_id"] == r]) for r in base["run_id"]]
    growth = [g for g in growth if g is not None]
    gap_noise = None
    if growth:
        gap_noise = _mean([g[1] for g in growth]) / math.sqrt(len(growth))
        if len(growth) >= 2:  # seed-to-seed spread, when it exceeds the val-set noise
            gap_noise = max(gap_noise, float(np.std([g[0] for g in growth], ddof=1))
                            / math.sqrt(len(growth)))
    fresh = results.runs[(results.runs["experiment"] == "fresh_data")
                         & (results.runs["source"] == OURS)]["inflection"].dropna()
    return dx.OverfittingEvidence(
        gap_growth=_mean([g[0] for g in growth]),
        gap_noise=finite_or_none(gap_noise),
        epochs_at_onset=_mean([_at_step(evals, onset, "epochs_seen")
                               for evals, onset in _onsets(results)]),
        excess_over_floor=_mean(list(base["final_loss"] - base["bayes_floor"])),
        higher_dropout=verdicts.get("higher_dropout"),
        early_stopping=verdicts.get("early_stopping"),
        fresh_data=verdicts.get("fresh_data"),
        fresh_data_inflection=fresh.mode().iloc[0] if len(fresh) else None,
    )


def lr_schedule_evidence(results: Results, effect_table: pd.DataFrame | None = None
                         ) -> dx.LRScheduleEvidence:
    """The LR in force at the baseline's onset as a fraction of its peak, and the verdicts of
    the schedule experiments."""
    effect_table = effects(results) if effect_table is None else effect_table
    verdicts = _verdicts_on(effect_table)
    fractions = []
    for evals, onset in _onsets(results):
        peak = evals["lr"].max()
        at_onset = _at_step(evals, onset, "lr")
        if at_onset is not None and peak > 0:
            fractions.append(at_onset / peak)
    return dx.LRScheduleEvidence(
        lr_at_onset_fraction=_mean(fractions),
        constant_lr=verdicts.get("constant_lr"),
        linear_decay=verdicts.get("linear_decay"),
        slower_min_lr=verdicts.get("slower_min_lr"),
        reference_lr_horizon=verdicts.get("reference_lr_horizon"),
    )


def load_balancing_evidence(results: Results, effect_table: pd.DataFrame | None = None
                            ) -> dx.LoadBalancingEvidence:
    """The aux loss as a fraction of CE and the routing imbalance at the baseline's end, and
    the verdicts of the balancing experiments."""
    effect_table = effects(results) if effect_table is None else effect_table
    verdicts = _verdicts_on(effect_table)
    ends = [results.evals[results.evals["run_id"] == r].sort_values("step").iloc[-1]
            for r in _baseline_runs(results)["run_id"]
            if (results.evals["run_id"] == r).any()]
    return dx.LoadBalancingEvidence(
        aux_loss_fraction=_mean([e["aux_loss"] / e["train_loss"] for e in ends
                                 if e["train_loss"] > 0]),
        max_violation=_mean([e["max_violation"] for e in ends]),
        lower_lb_weight=verdicts.get("lower_lb_weight"),
        no_lb=verdicts.get("no_lb"),
        aux_free_balance=verdicts.get("aux_free_balance"),
        router_z_loss=verdicts.get("router_z_loss"),
    )


def hypothesis_evidence(results: Results) -> dict[str, Any]:
    """The evidence dataclass of each hypothesis, keyed by its name in the report."""
    effect_table = effects(results)
    return {"overfitting": overfitting_evidence(results, effect_table),
            "the LR schedule": lr_schedule_evidence(results, effect_table),
            "load balancing": load_balancing_evidence(results, effect_table),
            "baseline inflections": list(_baseline_runs(results)["inflection"].dropna()),
            "reference schedule inflections": list(
                _runs_of(results, REFERENCE_SCHEDULE)["inflection"].dropna())}


def hypothesis_verdicts(evidence: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """{hypothesis: (verdict, reasons)} from diagnostics' verdict rules."""
    rules = {"overfitting": dx.overfitting_verdict,
             "the LR schedule": dx.lr_schedule_verdict,
             "load balancing": dx.load_balancing_verdict}
    verdicts = {name: rules[name](evidence[name]) for name in HYPOTHESES if name in evidence}
    return dx.require_inflection(verdicts, evidence.get("baseline inflections", []),
                                 evidence.get("reference schedule inflections", []))


def evidence_table(evidence: Any) -> pd.DataFrame:
    """One evidence dataclass as rows of (evidence, value); None reads "not measured"."""
    rows = [{"evidence": key.replace("_", " "),
             "value": "not measured" if value is None
             else (f"{value:.4f}" if isinstance(value, float) else value)}
            for key, value in vars(evidence).items()]
    return pd.DataFrame(rows)


def markdown(lines: Sequence[str] | str, bullets: bool = True) -> Any:
    """Sentences as an IPython Markdown object (a bulleted list unless bullets=False)."""
    from IPython.display import Markdown

    if isinstance(lines, str):
        return Markdown(lines)
    return Markdown("\n".join(f"- {line}" if bullets else line for line in lines))


def verdict_markdown(name: str, verdict: tuple[str, list[str]]) -> str:
    """A hypothesis's verdict and its reasons as a Markdown paragraph and list."""
    state, reasons = verdict
    return f"**Verdict on {name}: {state}.**\n\n" + "\n".join(f"- {r}" for r in reasons)


def routing_warnings(results: Results) -> list[str]:
    """Dead or collapsed experts at the end of each of our runs (from diagnostics)."""
    routing = results.routing
    if routing.empty:
        return []
    warnings = []
    for run_id, part in routing.groupby("run_id", sort=False):
        last = part[part["step"] == part["step"].max()]
        load = last.pivot_table(index="layer", columns="expert", values="load_share").to_numpy()
        warnings += [f"{run_id}: {w}" for w in dx.expert_warnings(load)]
    return warnings


# ---------------------------------------------------------------- the reference's results


def reference_caveats(results: Results) -> list[str]:
    """What the reference's recorded results cannot support, with numbers from its files."""
    runs = results.runs[(results.runs["source"] == REFERENCE)
                        & (results.runs["status"] != UNREADABLE)]
    if runs.empty:
        return []
    evals = results.evals[results.evals["source"] == REFERENCE]
    final = runs.groupby("experiment")["final_loss"].mean()
    sentences = [
        f"The reference recorded {len(runs)} runs, one seed each, with no per-sequence losses "
        "or standard errors: a difference between two of its experiments cannot be told from "
        "run-to-run or val-set noise, so this report does not rank them.",
        f"Its final val losses span {_fmt(float(final.max() - final.min()))} nats "
        f"({final.idxmin()} lowest, {final.idxmax()} highest); the reference ranked differences "
        "of this size without a noise estimate.",
    ]
    weights = {}
    for _, run in runs.iterrows():
        weights[run["experiment"]] = _recorded(run["run_dir"], "load_balancing_weight")
    lowered = sorted(e for e, w in weights.items() if w is not None and w < 0.01)
    if lowered:
        sentences.append(f"{', '.join(lowered)} recorded a load-balancing weight below 0.01 "
                         "but ran with 0.01: the configured weight never reached the MoE layers, "
                         "so they are repeats of the baseline, not tests of load balancing.")
    if not evals.empty and evals["lr"].notna().any():
        end_fraction = []
        for _, part in evals.groupby("run_id"):
            part = part.sort_values("step").dropna(subset=["lr"])
            if len(part) and part["lr"].max() > 0:
                end_fraction.append(part["lr"].iloc[-1] / part["lr"].max())
        sentences.append(
            f"Its LR schedule ran over micro-steps while stepping once per update: the logged "
            f"LR ends at {100 * float(np.median(end_fraction)):.1f}% of its peak (median over "
            "runs), so its cosine and linear schedules barely decayed and slower_min_lr hardly "
            "differs from the baseline.")
    short = runs[runs["experiment"] == "short_run"]
    if not short.empty:
        sentences.append(f"short_run is recorded with max_steps {short['max_steps'].iloc[0]:.0f} "
                         f"and actual_steps {short['actual_steps'].iloc[0]:.0f}: it was not short.")
    return sentences


def _recorded(run_dir: str, key: str) -> Any:
    """A value of experiment_config in a run's metrics.json (None when unreadable)."""
    try:
        metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text())
        return (metrics.get("experiment_config") or {}).get(key)
    except (OSError, ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- rendering


def render_report(
    run_dirs: Sequence[str | Path],
    reference_dirs: Sequence[str | Path] = (),
    out_html: str | Path = "reports/inflection_report.html",
    title: str = DEFAULT_TITLE,
    notebook: str | Path = REPORT_NOTEBOOK,
    keep_notebook: bool = False,
) -> Path:
    """Execute the report notebook on these runs and write one self-contained HTML file
    (no code, figures embedded); relative paths are taken from the repository root."""
    import jinja2
    import nbformat
    import papermill
    from nbconvert import HTMLExporter
    from papermill.exceptions import PapermillExecutionError

    out_html = resolve_dirs([out_html])[0]
    out_html.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="moe_report_"))
    executed = (out_html.with_suffix(".ipynb") if keep_notebook
                else workdir / Path(notebook).name)
    parameters = {"run_dirs": [str(d) for d in resolve_dirs(run_dirs)],
                  "reference_dirs": [str(d) for d in resolve_dirs(reference_dirs)]}
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                   cwd=str(Path(notebook).parent), progress_bar=False)
    except PapermillExecutionError as e:
        first_line = (e.source or "").strip().splitlines()[:1]
        raise ReportError(
            f"the report notebook {notebook} failed in cell {e.cell_index} "
            f"({first_line[0] if first_line else 'empty'!r}): {e.ename}: {e.evalue}; the "
            f"executed notebook is kept at {executed} to inspect"
        ) from None
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["title"] = title
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"report.html.j2": SELF_CONTAINED_TEMPLATE})],
        template_file="report.html.j2", exclude_input=True, exclude_input_prompt=True,
        exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    out_html.write_text(body, encoding="utf-8")
    if not keep_notebook:
        shutil.rmtree(workdir, ignore_errors=True)
    return out_html
