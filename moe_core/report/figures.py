"""Figures of one run or many, from the tidy tables of `moe_core.analysis.results`.

Each function draws one figure and returns it; nothing is shown or saved here. Figures
are built with `matplotlib.figure.Figure`, not pyplot, so no backend is chosen or changed:
Jupyter displays a returned figure inline and scripts save it with `fig.savefig`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from moe_core import escape as esc
from moe_core.analysis.results import REFERENCE
from moe_core.analysis.summary import sort_experiments
from moe_core.errors import UserInputError

STYLE = "whitegrid"
SEED_BAND = "sd"  # seaborn errorbar over seeds: mean line, +- one standard deviation
ZOOM_FROM_FRACTION = 0.7
# the smallest half-width of the expert-load scale: a balanced run is drawn pale, not as noise
# stretched to full colour
LOAD_SCALE_FLOOR = 0.02


def _figure(nrows: int = 1, ncols: int = 1, width: float = 7.0, height: float = 4.0,
            **subplot_kw) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure and a 2-D array of its axes."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    with sns.axes_style(STYLE):
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _message_figure(message: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig, axes = _figure(height=1.5)
    axes[0, 0].text(0.5, 0.5, message, ha="center", va="center",
                    transform=axes[0, 0].transAxes)
    axes[0, 0].set_axis_off()
    return fig


def _one_run(evals: pd.DataFrame) -> pd.DataFrame:
    runs = evals["run_id"].unique()
    if len(runs) > 1:
        raise UserInputError(f"this figure shows one run; the evals hold {len(runs)} "
                             f"({', '.join(map(str, runs[:5]))}); filter on run_id first")
    return evals.sort_values("step")


def with_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Add `label`: the experiment (as a figure label), marked "(reference)" for the
    reference's runs."""
    out = table.copy()
    reference = out["source"] == REFERENCE
    name = out["experiment"].map(esc.label)
    out["label"] = name.where(~reference, name + " (reference)")
    return out


def _label_order(table: pd.DataFrame) -> list[str]:
    ours = sort_experiments(table.loc[table["source"] != REFERENCE, "experiment"])
    theirs = sort_experiments(table.loc[table["source"] == REFERENCE, "experiment"])
    return list(dict.fromkeys([esc.label(name) for name in ours]
                              + [f"{esc.label(name)} (reference)" for name in theirs]))


def _palette(labels: Sequence[str]) -> dict[str, tuple]:
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "tab20", len(labels))
    return dict(zip(labels, colors, strict=True))


def _lines(ax: Axes, data: pd.DataFrame, x: str, y: str, *, style: str | None = None,
           per_run: bool = False) -> None:
    """One line per experiment (mean over seeds with a band), or per run when per_run."""
    data = with_labels(data).dropna(subset=[x, y])
    if data.empty:
        ax.text(0.5, 0.5, f"no {y.replace('_', ' ')} recorded", ha="center", va="center",
                transform=ax.transAxes)
        return
    order = _label_order(data)
    seeded = data.groupby("label")["run_id"].nunique().max() >= 2
    sns.lineplot(data=data, x=x, y=y, hue="label", hue_order=order, palette=_palette(order),
                 style=style, ax=ax,
                 units="run_id" if per_run else None, estimator=None if per_run else "mean",
                 errorbar=None if per_run or not seeded else SEED_BAND)
    legend = ax.get_legend()
    if legend is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, title=None)
        for text in ax.get_legend().texts:  # the hue column's name is an implementation detail
            if text.get_text() == "label":
                text.set_text("experiment")


def _floor_lines(ax: Axes, runs: pd.DataFrame | None) -> None:
    """A dashed line at each known Bayes floor (the best loss any model can reach)."""
    if runs is None or "bayes_floor" not in runs:
        return
    for floor in np.unique(runs["bayes_floor"].dropna().round(6)):
        ax.axhline(floor, color="0.3", linestyle="--", linewidth=1)
        ax.annotate(f"Bayes floor {floor:.3f}", (0.01, floor), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8, color="0.3")


# ---------------------------------------------------------------- one run


def metrics_panels(evals: pd.DataFrame) -> Figure:
    """The reference's four panels for one run: val loss vs time, val loss vs step with the
    best step and the degradation region, val accuracy, val perplexity (log scale)."""
    run = _one_run(evals)
    if run.empty:
        return _message_figure("no evals recorded: the run ended before its first eval")
    fig, axes = _figure(2, 2, width=6.0, height=4.0)
    (by_time, by_step), (accuracy, perplexity) = axes
    by_time.plot(run["elapsed_min"], run["val_loss"], marker=".", color="C0")
    by_time.set(xlabel="elapsed (min)", ylabel="val loss (nats)", title="Val loss vs time")
    by_step.plot(run["step"], run["val_loss"], marker=".", color="C0")
    finite = run[np.isfinite(run["val_loss"])]
    if not finite.empty:
        best = finite.loc[finite["val_loss"].idxmin()]
        last = finite.iloc[-1]
        by_step.axvline(best["step"], color="C2", linestyle="--",
                        label=f"best {best['val_loss']:.4f} @ {int(best['step'])}")
        if last["step"] > best["step"]:
            by_step.axvspan(best["step"], last["step"], color="C3", alpha=0.15,
                            label=f"degradation +{last['val_loss'] - best['val_loss']:.4f}")
        by_step.legend(frameon=False)
    by_step.set(xlabel="step", ylabel="val loss (nats)", title="Val loss vs step")
    accuracy.plot(run["step"], 100 * run["val_accuracy"], marker=".", color="C1")
    accuracy.set(xlabel="step", ylabel="val accuracy (%)", title="Val accuracy")
    perplexity.plot(run["step"], run["val_perplexity"], marker=".", color="C4")
    perplexity.set(xlabel="step", ylabel="val perplexity", title="Val perplexity",
                   yscale="log")
    fig.suptitle(esc.label(run["run_id"].iloc[0], max_chars=120))
    return fig


def aux_loss_and_balance(evals: pd.DataFrame, layer_routing: pd.DataFrame) -> Figure:
    """One run's auxiliary (balance + z) loss and each layer's max violation over steps."""
    run = _one_run(evals)
    if run.empty:
        return _message_figure("no evals recorded: the run ended before its first eval")
    fig, axes = _figure(1, 2, width=6.0)
    aux, balance = axes[0]
    aux.plot(run["step"], run["aux_loss"], marker=".", color="C5")
    aux.set(xlabel="step", ylabel="aux loss (weighted)", title="Auxiliary loss")
    layers = layer_routing[layer_routing["run_id"] == run["run_id"].iloc[0]] \
        if len(layer_routing) else layer_routing
    if layers.empty:
        balance.text(0.5, 0.5, "no routing recorded", ha="center", transform=balance.transAxes)
    else:
        sns.lineplot(data=layers, x="step", y="max_violation", hue="layer", palette="viridis",
                     ax=balance, legend="full")
    balance.axhline(0, color="0.5", linewidth=0.8)
    balance.set(xlabel="step", ylabel="max violation (busiest / mean - 1)",
                title="Routing balance per layer")
    return fig


# ---------------------------------------------------------------- one run or many


def val_loss_vs_time(evals: pd.DataFrame) -> Figure:
    """Val loss against wall-clock minutes, one line per run, coloured by experiment."""
    fig, axes = _figure()
    ax = axes[0, 0]
    _lines(ax, evals, "elapsed_min", "val_loss", per_run=True)
    ax.set(xlabel="elapsed (min)", ylabel="val loss (nats)", title="Val loss vs time")
    return fig


def _lr_long(evals: pd.DataFrame) -> pd.DataFrame:
    """One row per (eval, parameter group) of the LR applied; the reference logged one."""
    groups = [c for c in evals.columns if c.startswith("lr_")]
    keep = ["run_id", "experiment", "seed", "source", "step"]
    long = evals.melt(id_vars=keep, value_vars=groups, var_name="group", value_name="applied_lr")
    long["group"] = long["group"].str.removeprefix("lr_")
    long = long.dropna(subset=["applied_lr"])
    logged = evals[evals["source"] == REFERENCE][keep + ["lr"]].dropna(subset=["lr"])
    logged = logged.rename(columns={"lr": "applied_lr"}).assign(group="muon (logged)")
    return pd.concat([long, logged], ignore_index=True)


def lr_applied(evals: pd.DataFrame) -> Figure:
    """The LR each parameter group was updated with, over steps (log scale)."""
    fig, axes = _figure()
    ax = axes[0, 0]
    long = _lr_long(evals)
    _lines(ax, long, "step", "applied_lr", style="group", per_run=True)
    ax.set(xlabel="step", ylabel="learning rate", yscale="log" if len(long) else "linear",
           title="LR applied per parameter group")
    return fig


def train_vs_val_loss(evals: pd.DataFrame) -> Figure:
    """Val loss and the loss on a fixed train subset of the same size, and their gap."""
    fig, axes = _figure(1, 2, width=6.0)
    losses, gap = axes[0]
    ours = evals.dropna(subset=["train_subset_loss"])
    long = ours.melt(id_vars=["run_id", "experiment", "seed", "source", "step"],
                     value_vars=["val_loss", "train_subset_loss"], var_name="split",
                     value_name="loss")
    long["split"] = long["split"].map({"val_loss": "val", "train_subset_loss": "train subset"})
    _lines(losses, long, "step", "loss", style="split")
    losses.set(xlabel="step", ylabel="loss (nats)", title="Train subset vs val loss")
    _lines(gap, ours.assign(gap=ours["val_loss"] - ours["train_subset_loss"]), "step", "gap")
    gap.axhline(0, color="0.5", linewidth=0.8)
    gap.set(xlabel="step", ylabel="val - train subset (nats)", title="Generalization gap")
    return fig


# ---------------------------------------------------------------- many runs


def val_loss_overlay(evals: pd.DataFrame, runs: pd.DataFrame | None = None,
                     from_fraction: float = 0.0) -> Figure:
    """Val loss vs step per experiment (mean over seeds, band = sd when >= 2 seeds), from
    `from_fraction` of each run's training on; the Bayes floor dashed where known."""
    fig, axes = _figure(width=8.0, height=4.5)
    ax = axes[0, 0]
    shown = evals[evals["fraction"] >= from_fraction] if from_fraction > 0 else evals
    _lines(ax, shown, "step", "val_loss")
    title = "Val loss vs step" if from_fraction <= 0 else \
        f"Val loss, last {100 * (1 - from_fraction):.0f}% of training"
    if from_fraction <= 0:
        _floor_lines(ax, runs)
    elif runs is not None and runs["bayes_floor"].notna().any():
        title += f" (Bayes floor {runs['bayes_floor'].min():.3f}, below)"
    ax.set(xlabel="step", ylabel="val loss (nats)", title=title)
    return fig


def expert_load_heatmaps(routing: pd.DataFrame,
                         experiments: Sequence[str] = ("baseline", "no_lb")) -> Figure:
    """Each expert's share of tokens over training minus 1/E (perfect balance), per layer
    (rows) and experiment (columns), averaged over seeds, on a diverging scale centred at 0:
    shares near 1/E on a 0-to-max scale would all look alike."""
    present = [e for e in experiments if len(routing) and (routing["experiment"] == e).any()]
    if not present:
        names = ", ".join(map(esc.label, experiments))
        return _message_figure(f"no routing recorded for {names}")
    layers = int(routing["layer"].max()) + 1
    fig, axes = _figure(layers, len(present), width=4.2, height=1.9)
    num_experts = int(routing["expert"].max()) + 1
    shown = routing[routing["experiment"].isin(present)]
    # one symmetric scale for every panel, so colours compare across layers and arms
    reach = max(LOAD_SCALE_FLOOR, float((shown["load_share"] - 1 / num_experts).abs().max()))
    for col, experiment in enumerate(present):
        part = shown[shown["experiment"] == experiment]
        for layer in range(layers):
            ax = axes[layer, col]
            grid = part[part["layer"] == layer].pivot_table(
                index="expert", columns="step", values="load_share", aggfunc="mean")
            # about five step labels: one per eval column is unreadable at 100 evals
            sns.heatmap(grid - 1 / num_experts, ax=ax, cmap="vlag", center=0, vmin=-reach,
                        vmax=reach, cbar_kws={"label": f"share - 1/{num_experts}"},
                        xticklabels=max(1, grid.shape[1] // 5))
            ax.set(title=f"{esc.label(experiment)}, layer {layer}", xlabel="step",
                   ylabel="expert")
    return fig


# ---------------------------------------------------------------- the study's figures

CONTROL_COLOR = "#222222"
# one hue per explanation, shades within it; an experiment keeps its colour in every figure
FAMILY_SHADES = {
    "overfitting": ["#1f6fb4", "#6baed6", "#08306b"],
    "the LR schedule": ["#d94801", "#fd8d3c", "#8c2d04", "#fdae6b"],
    "load balancing": ["#238b45", "#74c476", "#00441b", "#a1d99b"],
    "router z-loss": ["#6a51a3", "#9e9ac8"],
    "other": ["#737373", "#a6a6a6", "#525252", "#bdbdbd"],
}
CONDITION_STYLES = ["-", "--", ":", "-."]


def experiment_colors(families: dict[str, str], control: str = "baseline") -> dict[str, str]:
    """A colour per experiment: the control near-black, the others a shade of their
    explanation's hue (families: experiment -> explanation), in the order given."""
    colors, used = {control: CONTROL_COLOR}, {}
    for experiment, family in families.items():
        if experiment in colors:
            continue
        shades = FAMILY_SHADES.get(family, FAMILY_SHADES["other"])
        colors[experiment] = shades[used.get(family, 0) % len(shades)]
        used[family] = used.get(family, 0) + 1
    return colors


def free_shade(family: str, taken) -> str:
    """A shade of the family's hue that no colour in `taken` uses (the last one if all are)."""
    shades = FAMILY_SHADES.get(family, FAMILY_SHADES["other"])
    return next((shade for shade in shades if shade not in set(taken)), shades[-1])


def rise_forest(rows: pd.DataFrame, colors: dict[str, str], title: str = "") -> Figure:
    """Each arm's rise with its 95% interval, grouped by condition, the control first.

    rows: one per arm with condition_label, experiment, arm, rise, ci_low, ci_high, rises
    (significant after correction), is_control.
    """
    if rows.empty:
        return _message_figure("no arm of ours to show")
    conditions = list(dict.fromkeys(rows["condition_label"]))
    most = max(max(1, (rows["condition_label"] == c).sum()) for c in conditions)
    # conditions side by side on one x scale: the figure stays short enough to share the
    # report's first screen with the question and the answer
    fig = Figure(figsize=(max(6.5, 4.8 * len(conditions)), 0.34 * most + 1.2),
                 layout="constrained")
    with sns.axes_style("whitegrid"):
        axes = fig.subplots(1, len(conditions), sharex=True, squeeze=False)[0]
    for ax, condition in zip(axes, conditions, strict=True):
        part = rows[rows["condition_label"] == condition].reset_index(drop=True)
        y = most - 1 - np.arange(len(part))  # from the top; a shorter panel ends early
        control = part[part["is_control"]]
        if len(control) and np.isfinite(control["ci_low"].iloc[0]):
            ax.axvspan(control["ci_low"].iloc[0], control["ci_high"].iloc[0],
                       color=CONTROL_COLOR, alpha=0.08, linewidth=0)
        ax.axvline(0, color="0.4", linewidth=1)
        for yi, (_, row) in zip(y, part.iterrows(), strict=True):
            color = colors.get(row["experiment"], "#737373")
            if np.isfinite(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=color, linewidth=2.2)
            ax.plot(row["rise"], yi, "o", color=color, markersize=7,
                    markerfacecolor=color if row["rises"] else "white", markeredgewidth=2)
        ax.set_yticks(y, [f"{esc.label(e)} (control)" if c else esc.label(e) for e, c in
                          zip(part["experiment"], part["is_control"], strict=True)])
        ax.set_ylim(-0.6, most - 0.4)
        ax.set_title(esc.label(condition), loc="left", fontsize=10, fontweight="bold")
        ax.grid(axis="y", visible=False)
    fig.supxlabel("rise of the val loss: last 10% of evals minus the lowest 10% (nats), "
                  "mean over seeds, 95% interval", fontsize=10)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


def control_vs_interventions(curves: dict, control: str, interventions: Sequence[str],
                             colors: dict[str, str], labels: dict[str, str] | None = None,
                             from_fraction: float = 0.3) -> Figure:
    """Small multiples: the control's val loss (mean over seeds, band = lowest to highest
    seed) beside each intervention's, from `from_fraction` of training on.

    curves: arm -> moe_core.analysis.effects.ArmCurves.
    """
    shown = [arm for arm in interventions if arm in curves]
    if control not in curves or not shown:
        return _message_figure("no intervention ran beside this control")
    labels = {arm: esc.label((labels or {}).get(arm, arm)) for arm in [control, *shown]}
    columns = min(2, len(shown))
    rows_n = -(-len(shown) // columns)
    fig, axes = _figure(rows_n, columns, width=3.9, height=2.8, sharey=True)
    base = curves[control]
    for index, ax in enumerate(axes.flat):
        if index >= len(shown):
            ax.set_axis_off()
            continue
        arm = shown[index]
        for name, color in ((control, CONTROL_COLOR), (arm, colors.get(arm, "#1f6fb4"))):
            c = curves[name]
            keep = c.steps >= from_fraction * c.steps[-1]
            ax.plot(c.steps[keep], c.loss.mean(0)[keep], color=color, linewidth=1.8,
                    label=labels[name])
            if c.n_seeds > 1:
                ax.fill_between(c.steps[keep], c.loss.min(0)[keep], c.loss.max(0)[keep],
                                color=color, alpha=0.18, linewidth=0)
        ax.set_title(labels[arm], fontsize=10)
        ax.set_xlabel("step")
        ax.legend(frameon=False, fontsize=8, loc="upper right")
    axes[0, 0].set_ylabel("val loss (nats)")
    fig.suptitle(f"{labels[control]} (black) against each intervention; bands: "
                 f"lowest to highest of {base.n_seeds} seeds", x=0.01, ha="left", fontsize=10)
    return fig


def generalisation_curves(curves: dict, control: str, arms: Sequence[str],
                          colors: dict[str, str], onset_fit: float,
                          censored: Sequence[str] = (), own_split: Sequence[str] = ()
                          ) -> Figure:
    """Val loss against train-subset loss (mean over seeds of window means), the control in
    black with its onset fit marked: an intervention that only slows fitting lies on the
    control's curve, one that changes generalisation lies off it. Left: every arm; right:
    the control's neighbourhood, where its rise happens. Censored arms (no rise, not as far
    as the onset) end in an open circle. Arms on their own train split (`own_split`:
    fresh data) are dashed, in the left panel only: their train-subset loss is on other
    documents, no common scale of progress.

    curves: arm -> moe_core.analysis.effects.ArmCurves with train_loss.
    """
    from moe_core.analysis.inflection import window_means

    shown = [a for a in [control, *arms] if a in curves and curves[a].train_loss is not None
             and np.all(np.isfinite(curves[a].train_loss))]
    if control not in shown:
        return _message_figure("the control has no train-subset loss: no progress to match")
    fig, axes = _figure(1, 2, width=4.6, height=3.6)
    paths = {}
    for arm in shown:
        c = curves[arm]
        paths[arm] = (window_means(c.train_loss, c.window).mean(0),
                      window_means(c.loss, c.window).mean(0))
    fit, val = paths[control]
    low = float(val.min())
    for ax, zoom in zip(axes[0], (False, True), strict=True):
        for arm in shown:
            if zoom and arm in own_split:
                continue
            x, y = paths[arm]
            color = CONTROL_COLOR if arm == control else colors.get(arm, "#1f6fb4")
            suffix = (" (control)" if arm == control else
                      " (own train split: fit not comparable)" if arm in own_split else "")
            ax.plot(x, y, color=color, linewidth=2.2 if arm == control else 1.6,
                    linestyle="--" if arm in own_split else "-",
                    label=esc.label(arm) + suffix)
            ax.plot(x[-1], y[-1], "o", color=color, markersize=6,
                    markerfacecolor="white" if arm in censored else color,
                    markeredgewidth=1.6)
        ax.axvline(onset_fit, color=CONTROL_COLOR, linestyle="--", linewidth=1)
        ax.invert_xaxis()  # more fit to the right
        ax.set_xlabel("train-subset loss (nats): fitting progress ->")
        if zoom:
            ax.set_xlim(onset_fit + 0.6, float(fit.min()) - 0.05)
            ax.set_ylim(low - 0.04, float(val[-1]) + 0.04)
            ax.set_title("near the control's onset (dashed)", fontsize=10, loc="left")
        else:
            ax.set_ylabel("val loss (nats)")
            ax.set_title("every arm", fontsize=10, loc="left")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)),
               frameon=False, fontsize=8)
    fig.suptitle("The generalisation curve: val loss against how far each arm has fitted its "
                 "train subset (mean over seeds).\nDashed: the control's fit at its onset. "
                 "Open circle: no rise and not yet as far as the onset (censored).",
                 x=0.01, ha="left", fontsize=10)
    return fig
