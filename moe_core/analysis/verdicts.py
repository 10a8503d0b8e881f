"""The study's answer: which arms rise, which interventions change the rise of a control
that rises, and what that says about each explanation of the inflection.

The design is read from the runs, not declared: a control is the `baseline` of a
condition; an intervention is an arm whose config differs from a control's in the keys of
one explanation only (`HYPOTHESIS_OF_KEY`): `fresh_data@reference_lr` differs from
`baseline@reference_lr` in train_documents_factor (overfitting); the corrected `baseline`
differs from it in lr_horizon (the LR schedule). An arm that differs in the keys of two
explanations tests neither against that control.

Rules, each with its reason:
- A cause can only explain a rise that happens: interventions are judged against
  controls whose own rise test is significant (one-sided, corrected over the controls;
  the interventions' own rise tests are a second family).
- Each explanation predicts the direction in which its interventions move the rise
  (less repetition or more dropout: lower; less balancing pressure: lower; a lower LR
  late in training, measured from the runs' LR traces: lower). The interventions of one
  explanation, against every control, are one family, corrected (Holm-Sidak) at ALPHA.
- An intervention is compared with a rising control at matched progress (`progress`): the
  rise between the control's onset fit and the furthest fit both reached (train-subset
  loss), seed by seed. An intervention that only slows fitting lies on the control's
  curve there. An arm that has not fitted (on average over its seeds) as far as the
  control had when it turned, and does not rise itself, is censored: "undetermined: needs
  a longer run", with a lower bound on the run length; never "removes the rise". So is an
  arm whose matched fit covers less than MIN_SPAN_SHARE of the control's fit range after
  its onset (decided from fits, never from val losses). An arm that rises short of that is
  compared at equal steps (both arms' change of val loss from the step where a rising
  control's gate runs are lowest to the end), where a lower rise from an arm that fitted
  less is censored too
  (slower fitting alone would lower it). An arm on another train split (fresh data) has no
  common scale of fit with the control: censored unless it rises. "Removes" needs the
  control's whole range (REMOVES_SPAN), no rise of its own, and its rise shown below half
  of the control's (`keeps_under`, the mirror of "persists"); a reduction over part of the
  range says so. Against a control that does not
  rise, interventions are compared at equal steps in a family of their own. At equal
  steps, both arms' rise is measured from the step where a rising control's gate runs are
  lowest (`gate_low_step`) to the end, a place no compared run chose.
- An intervention that moves the rise as predicted, beyond noise and beyond SUPPORT_MARGIN
  of the control's rise, supports the explanation (a smaller train split: its lowest
  window earlier); against the prediction, it counts against it; a rise that persists (an
  intervention that removes the cause still rises and keeps more than half of the
  control's rise) counts against it too, unless another intervention that removes the
  cause is censored (then undetermined); one that persists and still lowers the rise
  beyond the margin, beside it, or any support beside a rise that survives, makes it part
  of the cause. Anything else is inconclusive: not finding an effect is never a
  refutation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from moe_core.analysis import effects as fx
from moe_core.analysis.inflection import window_means
from moe_core.analysis.progress import (
    MIN_SPAN_SHARE,
    MatchedProgress,
    first_reaching,
    fit_windows,
    matched_progress,
)
from moe_core.analysis.results import COSMETIC_KEYS, OURS, Results
from moe_core.config.run_config import with_added_defaults
from moe_core.errors import UserInputError
from moe_core.record.metrics_json import is_finished_status

OVERFITTING = "overfitting"
LR_SCHEDULE = "the LR schedule"
LOAD_BALANCING = "load balancing"
HYPOTHESES = (OVERFITTING, LR_SCHEDULE, LOAD_BALANCING)
ROUTER_Z = "router z-loss"  # an intervention on the router, not one of the three explanations
OTHER = "other"

CONTROL_EXPERIMENT = "baseline"
# config key -> (explanation, sign): sign is how the rise should move when the key's value
# grows, if that explanation is right (None: the direction comes from measurements)
HYPOTHESIS_OF_KEY: dict[str, tuple[str, int | None]] = {
    "train_documents_factor": (OVERFITTING, -1),
    "dropout": (OVERFITTING, -1),
    "lr_schedule": (LR_SCHEDULE, None), "lr_horizon": (LR_SCHEDULE, None),
    "min_lr_ratio": (LR_SCHEDULE, None), "warmup_ratio": (LR_SCHEDULE, None),
    "lr_step_milestones": (LR_SCHEDULE, None), "lr_step_gamma": (LR_SCHEDULE, None),
    "lr": (LR_SCHEDULE, None), "adamw_lr_ratio": (LR_SCHEDULE, None),
    "lr_drop_at": (LR_SCHEDULE, None), "lr_drop_to": (LR_SCHEDULE, None),
    "load_balancing_weight": (LOAD_BALANCING, None), "balance_method": (LOAD_BALANCING, None),
    "aux_free_bias_rate": (LOAD_BALANCING, None),
    "router_z_loss_weight": (ROUTER_Z, None), "router_noise_std": (ROUTER_Z, None),
}
LATE_FRACTION = 0.25  # "late in training": the last quarter of the evals
LR_DIFFERENCE = 0.05  # late-LR fractions closer than this predict no change
# the main-cause margin: an intervention that removes the cause and keeps more than this
# share of the control's rise says the cause is not the main one ("the rise persists");
# one that keeps less (the same test the other way, one-sided, corrected) removes most of
# the rise. Symmetric: both are one-sided tests of the same boundary, and between them the
# share is undetermined
PERSISTS_SHARE = 0.5
# the smallest change that counts for an explanation, as a share of the control's rise:
# "as predicted" needs the change beyond noise and beyond this margin (one-sided, Holm in
# the family). With seeds paired, a tiny but consistent change is beyond noise (a
# not-quite-identical placebo, per-seed differences ~1e-7, gave p 0.024)
SUPPORT_MARGIN = 0.1
ONCE_EPOCHS = 1.5  # at most this many passes: train sequences are seen about once
# "removes the rise" needs a comparison over at least this share of the control's fit range
# after its onset (an arm's end fit within a few hundredths of the control's)
REMOVES_SPAN = 0.95

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
# removing the cause over the control's whole range left a rise beyond noise, and no
# change beyond noise: the cause is not needed for a rise; its share of it is undecided
NOT_WHOLE = "not the whole cause"
MIXED = "mixed"
# against one control: lowering the cause reduces the rise beyond noise, and where it is
# removed over the control's whole fit range a rise survives
PART = "part of the cause"
INCONCLUSIVE = "inconclusive"
UNDETERMINED = "undetermined"  # the deciding arms never reached the control's onset: run longer
UNTESTED = "untested"  # no control rises: nothing to explain

AS_PREDICTED = "as predicted"
AGAINST = "against the prediction"
PERSISTS = "the rise persists"
SURVIVES = "a rise survives without the cause"
NO_CHANGE = "no detected change"
WITHIN_MARGIN = "a change within the margin"  # beyond noise, not beyond SUPPORT_MARGIN
NO_PREDICTION = "no prediction"
CENSORED = "undetermined: needs a longer run"  # no rise yet, and not as far as the control's onset

MATCHED_FIT = "matched fit"  # what a comparison's decisive test compares
# an equal-steps comparison of an arm against a rising control is made because the arm's own
# rise passed on the same runs: its family's error rate is bounded (censored comparisons hold
# their places), but its own interval, read given that selection, leans toward a larger rise
# (simulated nulls with noisier arms: mean z +0.4 to +0.9 among those tested)
SELECTED = (", which is why it is compared here: given that, its interval leans toward a "
            "larger rise")
EQUAL_STEPS = "equal steps"


@dataclass(frozen=True)
class Comparison:
    """One intervention against one control: the change of the rise (intervention minus
    control, nats) and what it means for the explanation it tests."""

    control: str
    arm: str
    hypothesis: str
    changed: tuple[str, ...]  # the config keys that differ
    predicted: int  # -1: the explanation predicts a lower rise, +1 higher, 0 none
    # why: for the LR, its measured LR over the compared fit range at matched fit, else
    # over the last quarter of training
    prediction_basis: str
    # the intervention removes the suspected cause outright (no repeated data, no balancing
    # loss, a late LR under half the control's): if the rise persists, the cause is not it
    removes_cause: bool
    change: fx.Test
    arm_rise: fx.Test
    outcome: str = NO_CHANGE
    removes: bool = False  # as predicted, and the arm's own rise is not significant
    # for an intervention that removes the cause: arm rise - PERSISTS_SHARE x control rise
    # > 0, one-sided, Holm-Sidak within the explanation's family (None otherwise)
    keeps: fx.Test | None = None
    # for an intervention predicted to lower the rise: PERSISTS_SHARE x control rise - arm
    # rise > 0 (it keeps less than half), one-sided, Holm-Sidak over the family's reductions
    keeps_under: fx.Test | None = None
    # against a rising control, where the explanation predicts a direction (not a dose-up
    # decided by its onset): the change beyond SUPPORT_MARGIN x the control's rise in the
    # predicted direction ((1 - m) x control - arm, or arm - (1 + m) x control, > 0),
    # one-sided, Holm-Sidak over the family; `margin_at_equal_steps`: the same at equal
    # steps, uncorrected (a censored comparison's held place)
    beyond_margin: fx.Test | None = None
    margin_at_equal_steps: fx.Test | None = None
    # for an intervention that removes the cause over the control's whole range at matched
    # fit (REMOVES_SPAN): arm rise - remaining x control rise > 0 there, one-sided,
    # Holm-Sidak within the explanation's family (None otherwise)
    survives: fx.Test | None = None
    # how much of the suspected cause the arm still applies over the compared range, as a
    # share of the control's (the LR: its LR over the range / the control's; 0 where the
    # intervention removes the cause outright): where the explanation is the whole cause
    # and acts in proportion, the arm's rise is this share of the control's
    remaining: float = 0.0
    # what `change` compares: MATCHED_FIT, EQUAL_STEPS, or "" when nothing was tested
    # (censored: `change` is then the uncorrected change at equal steps, for the record)
    basis: str = ""
    progress: MatchedProgress | None = None
    # the control's rise between its onset fit and the matched fit (one-sided, uncorrected)
    at_equal_steps: fx.Test | None = None  # the change at equal steps, uncorrected
    censored_because: str = ""
    # for an arm short of the control's onset: its end val loss minus the control's at the
    # same fit (paired, uncorrected; near 0 on the control's curve, below 0 off it)
    level: fx.Test | None = None
    # its end val loss minus the control's lowest (paired, uncorrected): below 0 is further
    # than slower fitting along the control's curve could go
    below_lowest: fx.Test | None = None
    different_split: bool = False  # its train split differs: its fit is no common scale
    decides: bool = False  # against a rising control (else: the interaction, no verdict)
    # censored: at least this run length would decide (None: no estimate)
    steps_to_decide: float | None = None
    # at equal steps, when both rise: (arm, control) onsets, each (mean step over seeds,
    # its seeds' lowest and highest step, passes over the train split by the mean step)
    onsets: tuple[tuple[float, float, float, float], ...] = ()
    # at equal steps (`at_equal_steps`, and `change` when that is its basis): the step both
    # arms' rises are measured from (where a rising control's gate runs are lowest); None:
    # each arm from where its other seeds are lowest
    window_from: int | None = None
    # why it is None where there are equal steps: each arm from its own place, and why
    own_places_because: str = ""
    # the two statistics its decisive test compared (arm, control): at matched fit the
    # rises over the matched range, at equal steps the rises from `window_from`
    decisive_pair: tuple[fx.ArmStatistic, fx.ArmStatistic] | None = None
    # a dose of the cause up on the arm's own train split (more repetition per step): its
    # onset (each seed's own lowest window) minus the control's, in steps, paired by seed
    # (two-sided, uncorrected: its interval); `sooner` decides
    onset_shift: fx.Test | None = None
    # the same onsets, control minus arm > 0 (sooner), one-sided, Holm-Sidak in the family
    # beside the change tests: what decides a dose-up on its own split
    sooner: fx.Test | None = None
    # the arm's and the control's rise over the same passes over their train splits after
    # their onsets (the control's passes from its onset to its end), per seed, descriptive
    rise_per_passes: tuple[float, float] | None = None


@dataclass(frozen=True)
class HypothesisVerdict:
    name: str
    verdict: str
    controls: tuple[str, ...]  # the rising controls it was judged against
    reasons: tuple[str, ...]
    comparisons: tuple[Comparison, ...] = ()
    # (crossed control, the verdict against it): what the explanation's interventions do to
    # another experiment's rise, reported apart from the verdict
    scoped: tuple[tuple[str, str], ...] = ()


@dataclass
class StudyAnalysis:
    """Everything the report says about our runs, computed once."""

    curves: dict[str, fx.ArmCurves]
    configs: dict[str, dict]  # arm -> config of its runs
    rise_tests: dict[str, fx.Test]  # arm -> one-sided rise test, Holm over all arms
    controls: dict[str, str]  # condition -> control arm
    rising_controls: tuple[str, ...]
    comparisons: list[Comparison]
    verdicts: dict[str, HypothesisVerdict]
    late_lr: dict[str, float]  # arm -> mean applied LR / peak over the last quarter
    leader: dict[str, Any] = field(default_factory=dict)
    gap_growth: dict[str, fx.Test] = field(default_factory=dict)
    # crossed_controls: an arm that rises under a rising control's condition -> the same
    # experiment under the other conditions, each compared with it
    crossed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a control with gate seeds -> its curves there: its rise test (rise_tests) is theirs,
    # and `curves` holds its other runs, the ones compared (verdicts.gate_seeds)
    gates: dict[str, fx.ArmCurves] = field(default_factory=dict)
    # a control -> its own seeds (no other arm ran them), compared with nothing: its gate
    # seeds, or too few to be a gate (fewer than 2)
    own_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # where the first rising control with gate runs is lowest there (`gate_low_step`): the
    # step every comparison at equal steps measures both arms' rises from; None without one
    gate_low: int | None = None

    def family_of(self, c: Comparison) -> tuple[str, str | bool]:
        """The Holm family `c` was corrected in (module `family_of`)."""
        return family_of(c, self.crossed, self.judging_controls)

    @property
    def judging_controls(self) -> tuple[str, ...]:
        """The controls the verdicts are judged against: each condition's baseline that
        rises, then the crossed controls."""
        return self.rising_controls + tuple(self.crossed)


# ---------------------------------------------------------------- arms


def counted_runs(results: Results) -> pd.DataFrame:
    """Our finished runs, each counted once (duplicates and failures left out)."""
    runs = results.runs
    return runs[(runs["source"] == OURS) & runs["status"].map(is_finished_status)]


def arm_curves(results: Results, leave_out: Mapping[str, Sequence[int]] | None = None,
               only: Mapping[str, Sequence[int]] | None = None) -> dict[str, fx.ArmCurves]:
    """Each group's curves (seeds x common evals), in the order the runs were read: without
    the runs of `leave_out` (group -> seeds), or of the runs of `only` alone; the curves are
    built from the runs read (their common evals, their val split)."""
    runs = counted_runs(results)
    for seeds_of, keep in ((leave_out, False), (only, True)):
        if seeds_of is not None:
            listed = np.array([seed in seeds_of.get(group, ()) for group, seed
                               in zip(runs["group"], runs["seed"], strict=True)], dtype=bool)
            runs = runs[listed == keep]
    by_run = dict(tuple(results.evals[results.evals["run_id"].isin(runs["run_id"])]
                        .groupby("run_id", sort=False)))
    out = {}
    for group, part in runs.groupby("group", sort=False):
        mine = {r: by_run[r] for r in part["run_id"] if r in by_run}
        shas = part["val_sha"].dropna().unique()
        try:
            out[group] = fx.arm_curves_of(group, mine, results.val_sequences,
                                          shas[0] if len(shas) == 1 else None)
        except UserInputError:
            continue  # no evals, or seeds that share too few: nothing to analyse
    return out


def arm_configs(results: Results) -> dict[str, dict]:
    """Each group's config (its runs share one: a group is one config hash)."""
    runs = counted_runs(results)
    first = runs.drop_duplicates("group")
    return {g: results.configs.get(r, {}) for g, r in zip(first["group"], first["run_id"],
                                                           strict=True)}


def late_lr_fraction(curves: fx.ArmCurves, peak: float | None) -> float:
    """The mean applied LR over the last quarter of the evals, over the peak LR, averaged
    over seeds (NaN when no LR was recorded)."""
    if curves.lr is None or not peak:
        return float("nan")
    late = curves.lr[:, int(math.floor((1 - LATE_FRACTION) * curves.lr.shape[1])):]
    return float(np.nanmean(late) / peak) if np.isfinite(late).any() else float("nan")


def changed_keys(config: Mapping, control: Mapping) -> tuple[str, ...]:
    """Config keys whose values differ, identity and bookkeeping keys left out."""
    config, control = with_added_defaults(config), with_added_defaults(control)
    keys = (set(config) | set(control)) - set(COSMETIC_KEYS)
    return tuple(sorted(k for k in keys if config.get(k) != control.get(k)))


def hypothesis_of(keys: Sequence[str]) -> str:
    """The one explanation these changed keys belong to, OTHER when they span none or
    several. The run's length (LENGTH_KEYS) is no cause: an arm run longer so that it
    reaches the control's onset fit is judged at matched fit only."""
    families = {HYPOTHESIS_OF_KEY.get(k, (OTHER, None))[0] for k in keys
                if k not in LENGTH_KEYS}
    return families.pop() if len(families) == 1 else OTHER


def _effective_balancing_weight(config: Mapping) -> float:
    return float(config.get("load_balancing_weight") or 0.0) \
        if config.get("balance_method", "aux_loss") == "aux_loss" else 0.0


@dataclass(frozen=True)
class Exposure:
    """What an arm was exposed to, measured from its runs: the late LR (over its peak) and
    the passes over its train split at the end."""

    late_lr: float
    epochs: float


def predicted_direction(hypothesis: str, keys: Sequence[str], config: Mapping,
                        control: Mapping, mine: Exposure, theirs: Exposure
                        ) -> tuple[int, str, bool]:
    """(-1, +1 or 0, why, removes the cause): how the rise should move from the control to
    this arm if the explanation is right, and whether the arm removes the cause outright."""
    if hypothesis == LR_SCHEDULE:
        if not (math.isfinite(mine.late_lr) and math.isfinite(theirs.late_lr)):
            return 0, "no LR recorded", False
        gap = mine.late_lr - theirs.late_lr
        basis = (f"late LR {100 * mine.late_lr:.0f}% of peak vs the control's "
                 f"{100 * theirs.late_lr:.0f}% (last quarter of training, measured)")
        direction = 0 if abs(gap) < LR_DIFFERENCE else int(np.sign(gap))
        return direction, basis, direction < 0 and mine.late_lr <= 0.5 * theirs.late_lr
    if hypothesis == LOAD_BALANCING:
        weight, control_weight = (_effective_balancing_weight(config),
                                  _effective_balancing_weight(control))
        basis = f"balancing-loss weight {weight:g} vs the control's {control_weight:g}"
        return int(np.sign(weight - control_weight)), basis, weight == 0 < control_weight
    if hypothesis == OVERFITTING:
        signs = set()
        keys = [k for k in keys if k not in LENGTH_KEYS]
        for key in keys:
            sign = HYPOTHESIS_OF_KEY[key][1] or 0
            value, control_value = config.get(key), control.get(key)
            if isinstance(value, (int, float)) and isinstance(control_value, (int, float)):
                signs.add(sign * int(np.sign(value - control_value)))
        basis = ", ".join(f"{k} {control.get(k)} -> {config.get(k)}" for k in keys)
        if math.isfinite(mine.epochs) and math.isfinite(theirs.epochs):
            basis += f" ({mine.epochs:.1f} vs {theirs.epochs:.1f} epochs)"
        direction = signs.pop() if len(signs) == 1 else 0
        once = math.isfinite(mine.epochs) and mine.epochs <= ONCE_EPOCHS < theirs.epochs
        return direction, basis, direction < 0 and once
    return 0, "no explanation of the three predicts this change", False


# ---------------------------------------------------------------- the analysis


def analyse(results: Results, alpha: float = fx.ALPHA) -> StudyAnalysis:
    """Rise tests, interventions against rising controls, and the three verdicts."""
    configs = arm_configs(results)
    groups = results.groups
    # a control's own seeds (no other arm ran them) test whether it rises and nothing else;
    # every comparison reads its other runs: two sets of curves, each from its own runs
    own = gate_seeds(results, [g for g in dict.fromkeys(counted_runs(results)["group"])
                               if groups[g].experiment == CONTROL_EXPERIMENT
                               and not groups[g].variant])
    curves = arm_curves(results, leave_out=own)
    # in the order of their names, never the order runs were read: which rising control fixes
    # the step rises at equal steps are measured from, and which cell of a crossed pair is its
    # control, follow from it
    controls = {groups[arm].condition: arm for arm in sorted(curves)
                if groups[arm].experiment == CONTROL_EXPERIMENT and not groups[arm].variant}
    gates = {control: c for control, c in arm_curves(results, only=own).items()
             if control in curves and c.n_seeds >= 2}
    rise_stats = {arm: fx.rise_statistic(c) for arm, c in curves.items()}
    # two families: does each condition's control rise (the gate, the study's primary
    # question: on its gate seeds where it has them), and does each intervention still rise
    # (what an outcome is called)
    rise_tests: dict[str, fx.Test] = {}
    for family in (list(controls.values()),
                   [arm for arm in curves if arm not in controls.values()]):
        rise_tests.update(zip(family, fx.correct(
            [fx.one_sample(fx.rise_statistic(gates[a]) if a in gates else rise_stats[a])
             for a in family], alpha), strict=True))
    # where a gated control is itself the arm of a comparison, its rise there is its
    # compared runs' (the runs the change is taken over), corrected over the controls too
    compared_rise = dict(rise_tests)
    compared_rise.update(zip(controls.values(), fx.correct(
        [fx.one_sample(rise_stats[a]) for a in controls.values()], alpha), strict=True))
    rise_tests = {arm: rise_tests[arm] for arm in curves}
    rising = tuple(c for c in controls.values() if rise_tests[c].significant)
    crossed = crossed_controls(curves, groups, controls, rising, rise_tests)
    judging = rising + tuple(crossed)
    late_lr = {arm: late_lr_fraction(c, configs[arm].get("lr")) for arm, c in curves.items()}
    low_step = gate_low_step(gates, rising)
    epochs = counted_runs(results).groupby("group")["epochs_seen"].mean() \
        if "epochs_seen" in results.runs else pd.Series(dtype=float)
    exposure = {arm: Exposure(late_lr[arm], float(epochs.get(arm, float("nan"))))
                for arm in curves}

    # per explanation, two families: its interventions against the rising controls (they
    # decide), and against the controls that do not rise (at equal steps: whether an
    # intervention matters under either condition; no verdict rests on them)
    candidates: list[Comparison] = []  # each change test before its family's correction
    pairs = [(control, arm) for control in controls.values() for arm in curves] + [
        (control, arm) for control, arms in crossed.items() for arm in arms]
    for control, arm in pairs:
        if arm == control or groups[arm].variant:
            continue
        keys = changed_keys(configs[arm], configs[control])
        family = hypothesis_of(keys)
        if not keys or family == OTHER:
            continue
        predicted, basis, removes_cause = predicted_direction(
            family, keys, configs[arm], configs[control], exposure[arm], exposure[control])
        # at equal steps both arms are measured from one step fixed before their runs were
        # read, where a rising control's gate runs are lowest; each from its own
        # leave-one-out place is biased between arms of unequal noise, and its seeds'
        # values share the runs their places were read off (`fx.rise_from`). Without such
        # a step (or a window there), each from its own place, said
        fixed = None if low_step is None else (fx.rise_from(curves[arm], low_step),
                                               fx.rise_from(curves[control], low_step))
        because = ""
        if fixed is not None and None not in fixed \
                and curves[arm].steps[-1] == curves[control].steps[-1]:
            steps_pair, window_from = fixed, low_step
        else:
            steps_pair, window_from = (rise_stats[arm], rise_stats[control]), None
            because = (
                "no rising control has gate runs to fix one step for both" if low_step is None
                else f"no window of their evals starts at step {low_step} clear of the end "
                "window" if fixed is None or None in fixed
                else f"they end at different steps ({int(curves[arm].steps[-1])} and "
                f"{int(curves[control].steps[-1])}: a run stopped early shortens its arm)")
        at_steps = fx.two_sample(*steps_pair)
        other_length = bool(set(keys) & set(LENGTH_KEYS))  # runs of another length have
        # no equal steps
        comparison = Comparison(control, arm, family, keys, predicted, basis,
                                removes_cause, change=at_steps, arm_rise=compared_rise[arm],
                                at_equal_steps=None if other_length else at_steps,
                                margin_at_equal_steps=None if other_length
                                else margin_test(steps_pair, predicted),
                                window_from=None if other_length else window_from,
                                own_places_because="" if other_length else because)
        if control in judging:
            comparison, pair = _decide_basis(comparison, curves, gates, steps_pair,
                                             configs, exposure)
            if comparison.basis == MATCHED_FIT and family == LR_SCHEDULE:
                # the LR each arm applied while it fitted over the compared range, not
                # over the last quarter of its whole run (a longer run applies its late
                # LR after the range)
                over = {name: _lr_over_range(curves[name], comparison.progress,
                                             configs[name].get("lr"))
                        for name in (arm, control)}
                predicted, basis, removes_cause = predicted_direction(
                    family, keys, configs[arm], configs[control],
                    replace(exposure[arm], late_lr=over[arm]),
                    replace(exposure[control], late_lr=over[control]))
                comparison = replace(comparison, predicted=predicted,
                                     prediction_basis=basis.replace(
                                         "last quarter of training",
                                         "over the compared fit range"),
                                     removes_cause=removes_cause,
                                     remaining=_share(over[arm], over[control]))
        elif other_length:
            continue  # no comparison at equal steps
        else:
            # against a control that does not rise: at equal steps, a family of its own
            comparison, pair = replace(comparison, basis=EQUAL_STEPS), steps_pair
        if pair is not None:
            comparison = replace(comparison, change=fx.two_sample(*pair), decisive_pair=pair)
        if comparison.basis == EQUAL_STEPS and comparison.arm_rise.significant:
            comparison = replace(comparison, onsets=tuple(
                _onset(curves[name], exposure[name].epochs)
                for name in (arm, control)))
            if _dose_up(comparison):
                onsets = (_onset_statistic(curves[arm]), _onset_statistic(curves[control]))
                resolution = max(curves[arm].eval_spacing, curves[control].eval_spacing)
                comparison = replace(
                    comparison,
                    onset_shift=fx.two_sample(*onsets, resolution=resolution),
                    sooner=fx.two_sample(onsets[1], onsets[0], alternative="greater",
                                         resolution=resolution) if control in judging
                    else None,
                    rise_per_passes=_rise_over_control_passes(
                        curves[arm], exposure[arm].epochs, curves[control],
                        exposure[control].epochs))
        if control in judging and comparison.basis and comparison.sooner is None:
            comparison = replace(comparison, beyond_margin=margin_test(
                comparison.decisive_pair, comparison.predicted))
        candidates.append(comparison)
    comparisons = []
    # a family per explanation: its interventions against the rising controls, against the
    # controls that do not rise, and against each crossed control apart (another
    # experiment's rise: its own question, reported apart from the verdict)
    def family(c: Comparison) -> tuple[str, str | bool]:
        return family_of(c, crossed, judging)

    for family_key in dict.fromkeys(family(c) for c in candidates):
        decides = family_key[1] is not False
        members = [c for c in candidates if family(c) == family_key]
        tested = [c for c in members if c.basis]
        # the family's size is its design's: a censored comparison holds its place with
        # its test at equal steps (p 1 without one) and claims nothing. Which comparisons
        # are tested is read off the compared runs (an arm on its own split is compared at
        # equal steps only when it rises beyond noise), so a family of the tested alone
        # shrank, and loosened its levels, exactly when a lucky rise was selected. Holm over
        # the design's family is never looser than over the tested alone, never tighter
        # than with p 1 in every held place; it assumes each held test valid under its
        # null and the basis of each place (matched fit or equal steps) chosen from fits
        # and gate runs, never from the compared val losses
        held = [_held_p(c) for c in members if not c.basis] if decides else []
        # a dose-up on its own split takes two places when tested (its change and whether it
        # its lowest window comes earlier) and none among the margins: censored, the same
        held += [1.0 for c in members if not c.basis and _dose_up(c)] if decides else []
        # a dose-up on its own split is decided by whether its low comes earlier: that joins
        # the family beside its change (which can still count against the prediction)
        dose_ups = [c for c in tested if c.sooner is not None]
        corrected = fx.correct([c.change for c in tested] + [c.sooner for c in dose_ups],
                               alpha, held)
        change = dict(zip(((c.control, c.arm) for c in tested), corrected[:len(tested)],
                          strict=True))
        sooner = dict(zip(((c.control, c.arm) for c in dose_ups), corrected[len(tested):],
                          strict=True))
        # the margin tests, a family of the same places: a censored comparison's is its
        # margin test at equal steps (p 1 without one)
        margined = [c for c in tested if c.beyond_margin is not None]
        margin_held = [_p_or_one(c.margin_at_equal_steps) for c in members
                       if not c.basis and c.predicted and not _dose_up(c)] if decides else []
        margin = dict(zip(((c.control, c.arm) for c in margined),
                          fx.correct([c.beyond_margin for c in margined], alpha, margin_held),
                          strict=True))
        censored_removals = sum(c.removes_cause for c in members if not c.basis)
        censored_reductions = sum(c.predicted < 0 for c in members if not c.basis)
        keeps = _share_tests(tested, _keeps_share, alpha, censored_removals) if decides else {}
        keeps_under = _share_tests(tested, _reduction_share, alpha, censored_reductions,
                                   under=True) if decides else {}
        survives = _share_tests(tested, _survives_share, alpha,
                                censored_removals) if decides else {}
        for c in members:
            if not c.basis:  # censored: holds its places, judged by nothing
                comparisons.append(c)
                continue
            key = (c.control, c.arm)
            comparisons.append(_judge(replace(
                c, change=change[key], sooner=sooner.get(key), beyond_margin=margin.get(key),
                keeps=keeps.get(key), keeps_under=keeps_under.get(key),
                survives=survives.get(key))))
    order = {(c.control, c.arm): i for i, c in enumerate(candidates)}
    comparisons.sort(key=lambda c: order[(c.control, c.arm)])
    verdicts = {name: _verdict(name, [c for c in comparisons if c.hypothesis == name
                                      and c.control in judging], rising, controls,
                               tuple(crossed))
                for name in HYPOTHESES}
    gap = {}
    for control in controls.values():
        stat = fx.gap_growth_statistic(curves[control])
        if stat is not None:
            gap[control] = fx.one_sample(stat)
    return StudyAnalysis(curves, configs, rise_tests, controls, rising, comparisons, verdicts,
                         late_lr, leader(curves, alpha), gap, crossed, gates,
                         {c: seeds for c, seeds in own.items() if c in curves}, low_step)


VERDICT_FAMILY = True  # `family_of`'s key for an explanation's verdict family


def family_of(c: Comparison, crossed: Collection[str], judging: Collection[str]
              ) -> tuple[str, str | bool]:
    """The Holm family a comparison is corrected in: (its explanation, VERDICT_FAMILY)
    against the rising controls (the verdict's family), (its explanation, the control)
    against a crossed control (each its own), (its explanation, False) against the
    controls that do not rise."""
    return c.hypothesis, c.control if c.control in crossed else c.control in judging


def gate_low_step(gates: Mapping[str, fx.ArmCurves], rising: Sequence[str]) -> int | None:
    """Where the first rising control with gate runs (by name) is lowest over them (the
    first step of its lowest window of their mean curve): the study's inflection, placed by
    runs that are compared with nothing; None without one."""
    for control in rising:
        if control in gates:
            curves = gates[control]
            means = window_means(curves.loss.mean(0), curves.window)
            return int(curves.steps[int(np.argmin(means))])
    return None


def gate_seeds(results: Results, controls: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Each control's own seeds, finished: the seeds it ran that no other arm ran (the
    design: which runs were launched, finished or not, never their results), where it has
    at least 2 other finished runs to compare. They never enter a comparison (no other arm
    has their seed to pair with); with at least 2 of them its rise is tested on these alone
    (its gate seeds), so the runs that decide whether a control rises are not the runs
    compared with it: a control that passes its gate by chance does not carry that luck
    into the comparisons (reused, a barely rising control's inflated rise makes every
    intervention look lower). With fewer, its rise is tested on its compared runs, and the
    report says so."""
    launched = results.runs[results.runs["source"] == OURS].dropna(subset=["seed"])
    seeds_of = {group: set(part["seed"].astype(int))
                for group, part in launched.groupby("group", sort=False)}
    finished = {group: set(part["seed"].astype(int)) for group, part
                in counted_runs(results).dropna(subset=["seed"]).groupby("group", sort=False)}
    out = {}
    for control in controls:
        others = set().union(*(seeds for group, seeds in seeds_of.items() if group != control))
        own = seeds_of.get(control, set()) - others
        done = finished.get(control, set())
        if own & done and len(done - own) >= 2:
            out[control] = tuple(sorted(own & done))
    return out


def crossed_controls(curves: Mapping[str, fx.ArmCurves], groups: Mapping[str, Any],
                     controls: Mapping[str, str], rising: Sequence[str],
                     rise_tests: Mapping[str, fx.Test]) -> dict[str, tuple[str, ...]]:
    """The design crossed: an experiment run under a rising control's condition and under
    another condition is two cells of a 2 x 2. Where its arm under the rising condition
    rises itself (its rise test, corrected with the other arms'), it is a control of its
    own: of the same experiment under the other conditions, which differ from it only in
    the condition's keys. So the condition's change (the LR schedule) is also tested where
    the experiment changed the rise (a smaller train split: larger and sooner), at matched
    fit on that experiment's own train split. {control arm: its counterparts}. Where both
    conditions' controls rise (both cells of a pair rise), the pair is compared once, with
    the arm under the first rising condition as its control: the reverse is nearly the same
    comparison (only the onset it is anchored on differs), not a second test."""
    crossed: dict[str, tuple[str, ...]] = {}
    for condition, control in controls.items():
        if control not in rising:
            continue
        for arm in curves:
            group = groups[arm]
            if (group.condition != condition or group.variant or arm == control
                    or not rise_tests[arm].significant):
                continue
            others = tuple(o for o in curves if groups[o].experiment == group.experiment
                           and groups[o].condition != condition and not groups[o].variant
                           and arm not in crossed.get(o, ()))  # each pair tested once
            if others:
                crossed[arm] = others
    return crossed


def _decide_basis(c: Comparison, curves: Mapping[str, fx.ArmCurves],
                  gates: Mapping[str, fx.ArmCurves],
                  steps_pair: tuple[fx.ArmStatistic, fx.ArmStatistic],
                  configs: Mapping[str, dict], exposure: Mapping[str, Exposure]
                  ) -> tuple[Comparison, tuple[fx.ArmStatistic, fx.ArmStatistic] | None]:
    """What a comparison with a rising control is decided on: the rises at matched fit when
    the arm reached the control's onset fit and the matched fit covers MIN_SPAN_SHARE of
    the control's fit range after it; the rises at equal steps (`steps_pair`) when the arm
    rises before that; else nothing: the comparison is censored, with the reason."""
    different = bool(set(c.changed) & set(SPLIT_KEYS))
    progress = None if different else matched_progress(curves[c.arm], curves[c.control],
                                                        gates.get(c.control))
    c = replace(c, progress=progress, different_split=different, decides=True,
                below_lowest=fx.two_sample(fx.end_statistic(curves[c.arm]),
                                           lowest_statistic(curves[c.control])))
    if progress is not None and progress.level is not None:
        c = replace(c, level=fx.two_sample(*progress.level))
    if progress is not None and progress.reached and progress.arm_rise is not None:
        if progress.span_covered:
            return replace(c, basis=MATCHED_FIT), (progress.arm_rise, progress.control_rise)
        if not c.arm_rise.significant:
            return replace(c, outcome=CENSORED, censored_because=(
                f"it fitted to {progress.arm_end_fit:.2f}, past the control's onset fit "
                f"({progress.onset_fit:.2f}), but not as far as "
                f"{progress.fit_for_span:.2f}, which a comparison needs to cover "
                f"{MIN_SPAN_SHARE:.0%} of the control's fit range after its onset (to "
                f"{progress.control_end_fit:.2f}); "
                + _run_length(progress.steps_needed, progress.control_end_fit)),
                steps_to_decide=progress.steps_needed), None
    if set(c.changed) & set(LENGTH_KEYS):
        return replace(c, outcome=CENSORED, censored_because=(
            f"it ran {int(curves[c.arm].steps[-1])} steps where the control ran "
            f"{int(curves[c.control].steps[-1])}, so it can only be compared at matched fit, "
            "and it " + ("did not reach the control's onset fit" if progress is None
                         or not progress.reached else "did not cover half of the "
                         "control's fit range after its onset")
            + ("" if progress is None else f" (its end fit {progress.arm_end_fit:.2f}, "
               f"the onset {progress.onset_fit:.2f})"))), None
    if c.arm_rise.significant:
        return replace(c, basis=EQUAL_STEPS), steps_pair
    because, steps = _censoring(c, curves[c.arm], curves[c.control], progress, configs,
                                exposure)
    return replace(c, outcome=CENSORED, censored_because=because, steps_to_decide=steps), None


# the run's length: an arm that differs in it (as well as in one explanation's keys) is
# compared at matched fit only, never at equal steps or by its end
# hold_final_lr: a longer run that continues the shorter one (its schedule, then its last
# LR) is the same intervention at another length
LENGTH_KEYS = ("max_steps", "steps_fraction", "hold_final_lr")

# config keys that change the train split: an arm with another split has its own
# train-subset loss, no common scale of fitting progress with the control
SPLIT_KEYS = ("data_source", "seq_len", "num_documents", "val_fraction", "data_seed",
              "train_documents_factor", "data_path", "text_field", "hub_dataset", "hub_config",
              "hub_split", "synthetic_topics", "synthetic_branching", "synthetic_zipf",
              "synthetic_doc_tokens")


def _own_lows(curves: fx.ArmCurves) -> np.ndarray:
    """Each seed's own lowest window (an index per seed), read off its own run alone."""
    return window_means(curves.loss, curves.window).argmin(1)


def _onset_statistic(curves: fx.ArmCurves) -> fx.ArmStatistic:
    """Each seed's onset, the middle step of its own lowest window, as a per-seed statistic
    (no val-sequence part), for a test of the onsets paired by seed. Its own: each value
    from one run, so the seeds' values are independent. Where the other seeds are lowest
    (as the rise is measured) they share runs: a one-sided paired t over those onsets
    rejected 19% of 287 simulated nulls (the smaller split on the control's curve), raw,
    before the family's correction; over these 6.6%, mildly above 5% (a reviewer's 485
    more: pooled 51 of 772, 95% CI 5.0-8.6%), about 1% after Holm. The lowest window of a
    noisy curve also moves earlier the steeper the rise after it (noise spreads it toward
    the flatter side before): a rise 3x the control's from the same step read as earlier
    in 29% raw, 7% after Holm (a reviewer's 500 studies). So it measures where the rise
    is, not where it starts."""
    window, steps = curves.window, curves.steps
    onsets = np.array([(steps[low] + steps[low + window - 1]) / 2
                       for low in _own_lows(curves)])
    return fx.ArmStatistic(curves.arm, "onset step", onsets, seeds=curves.seeds)


def _rise_over_control_passes(arm: fx.ArmCurves, arm_epochs: float, control: fx.ArmCurves,
                              control_epochs: float) -> tuple[float, float] | None:
    """Mean over seeds of each arm's rise from its onset window (each seed's own lowest)
    over as many passes over its own train split as the control made from its onset to its
    end: (arm, control). A rise that only comes sooner is no larger over the same passes."""
    if not (math.isfinite(arm_epochs) and math.isfinite(control_epochs)) or arm_epochs <= 0:
        return None
    window = arm.window
    arm_means, control_means = (window_means(arm.loss, window),
                                window_means(control.loss, control.window))
    # from its onset window's middle to its end window's middle: the span its rise spans
    control_steps = (control.steps[-control.window:].mean()
                     - _onset_statistic(control).per_seed.mean())
    passes = control_epochs * control_steps / control.steps[-1]
    span = passes * arm.steps[-1] / arm_epochs  # steps the arm takes for those passes
    step_of_eval = arm.steps[1] - arm.steps[0] if len(arm.steps) > 1 else 1
    rises = []
    for i, start in enumerate(_own_lows(arm)):
        end = min(arm_means.shape[1] - 1, int(start) + int(round(span / step_of_eval)))
        rises.append(arm_means[i, end] - arm_means[i, start])
    own = [control_means[i, -1] - control_means[i, start]
           for i, start in enumerate(_own_lows(control))]
    return float(np.mean(rises)), float(np.mean(own))


def _onset(curves: fx.ArmCurves, epochs: float) -> tuple[float, float, float, float]:
    """An arm's onset: each seed's is the middle step of its own lowest window; (their mean,
    lowest, highest, the passes over its train split by the mean step, from the passes by
    its last step)."""
    steps = _onset_statistic(curves).per_seed
    return (float(steps.mean()), float(steps.min()), float(steps.max()),
            float(epochs * steps.mean() / curves.steps[-1]))


def lowest_statistic(curves: fx.ArmCurves) -> fx.ArmStatistic:
    """Each seed's val loss over the window where its other seeds are lowest (as the rise is
    measured: its end window minus its rise)."""
    end, rise = fx.end_statistic(curves), fx.rise_statistic(curves)
    return replace(end, name="lowest val loss", per_seed=end.per_seed - rise.per_seed,
                   per_sequence=None if end.per_sequence is None or rise.per_sequence is None
                   else end.per_sequence - rise.per_sequence)


def onset_step(curves: fx.ArmCurves) -> int:
    """The middle step of the window where the arm's mean val loss is lowest."""
    means = window_means(curves.loss.mean(0), curves.window)
    return int(curves.steps[int(np.argmin(means)) + curves.window // 2])


def _run_length(steps: float | None, target: float) -> str:
    if steps is None:
        return "its train-subset loss is not falling at its end, so no run length follows"
    return (f"a run of at least {round_steps(steps)} steps would reach the control's end fit "
            f"({target:.2f}) at its end-of-run fitting rate (fitting slows: likely more)")


def _censoring(c: Comparison, curves: fx.ArmCurves, control: fx.ArmCurves,
               progress: MatchedProgress | None, configs: Mapping[str, dict],
               exposure: Mapping[str, Exposure]) -> tuple[str, float | None]:
    """Why an arm that does not rise cannot be said to remove the rise, and what it does
    show (whether it lies on the control's generalisation curve); with the run length that
    would decide, where one can be estimated."""
    means = window_means(curves.loss.mean(0), curves.window)
    turned = ("its val loss still falling: its lowest window is its last"
              if int(np.argmin(means)) == means.size - 1
              else f"its rise {c.arm_rise.estimate:+.3f} within noise")
    head = f"no rise within {int(curves.steps[-1])} steps ({turned})"
    low = c.below_lowest
    beyond = (low is not None and low.ci_high is not None and low.ci_high < 0)
    below = ("" if low is None or low.ci_low is None else
             f"; its val loss ends {-low.estimate:.3f} below the control's lowest (95% CI "
             f"{-low.ci_high:.3f} to {-low.ci_low:.3f}), "
             + ("further than fitting more slowly along the control's curve could go"
                if beyond else "not beyond noise"))
    if c.different_split:
        changed = ", ".join(f"{k} {configs[c.control].get(k)} -> {configs[c.arm].get(k)}"
                            for k in c.changed if k in SPLIT_KEYS)
        mine, theirs = exposure[c.arm].epochs, exposure[c.control].epochs
        passes, needed = "", None
        if all(map(math.isfinite, (mine, theirs))) and mine > 0:
            at_onset = theirs * onset_step(control) / float(control.steps[-1])
            needed = at_onset / mine * float(curves.steps[-1])
            passes = (f"; the control turned after {at_onset:.1f} passes over its split, which "
                      f"this arm would make in about {round_steps(needed)} steps")
        return (f"{head}; its train split differs ({changed}), so its train-subset loss is no "
                f"measure of the same progress{below}; whether it would turn later is "
                f"undetermined{passes}"), needed
    if progress is None:
        return (head + "; no train-subset loss recorded, so whether it fitted as far as the "
                "control had when it turned is unknown" + below), None
    level = c.level
    on_curve = ""
    if level is not None and level.ci_low is not None:
        off = level.ci_high < 0 or level.ci_low > 0
        on_curve = (f"; at the fit it reached, its val loss differs from the control's at the "
                    f"same fit by {level.estimate:+.3f} (95% CI {level.ci_low:+.3f} to "
                    f"{level.ci_high:+.3f}): "
                    + ("off the control's curve (it generalises "
                       + ("better" if level.estimate < 0 else "worse") + ", not only more "
                       "slowly)" if off else "on the control's curve (it only fits more "
                       "slowly, as far as this shows)"))
    return (f"{head}, but it fitted its train subset only to {progress.arm_end_fit:.2f} (mean "
            f"over seeds) where the control turned at {progress.onset_fit:.2f} (seed sd "
            f"{progress.onset_fit_sd:.2f}){on_curve}{below}; "
            + _run_length(progress.steps_needed, progress.control_end_fit)), \
        progress.steps_needed


def round_steps(steps: float) -> int:
    """A run length as a researcher would set it: up to the next 50 steps."""
    return int(50 * math.ceil(steps / 50))


def _share_tests(members: list[Comparison], share_of: Callable[[Comparison], float | None],
                 alpha: float, held: int = 0, under: bool = False
                 ) -> dict[tuple[str, str], fx.Test]:
    """For each tested intervention of one family that `share_of` gives a share (None: not
    tested): does the arm rise by more than that share of its control's rise (`under`: by
    less), on the comparison's own basis (matched fit or equal steps)? (arm rise - share x
    control rise > 0, or share x control rise - arm rise > 0, one-sided, with the control's
    own noise, paired by seed and by val sequence where the arms share them
    (`effects.seed_pairing`); Holm-Sidak over these tests and `held` places of p 1, the
    censored interventions the family would have tested)."""
    shares = {(c.control, c.arm): (c.decisive_pair, share) for c in members
              if (share := share_of(c)) is not None}
    tests = [fx.two_sample(fx.scaled(control, share), arm, alternative="greater") if under
             else fx.two_sample(arm, fx.scaled(control, share), alternative="greater")
             for (arm, control), share in shares.values()]
    # a censored comparison of an intervention that removes the cause holds a place (p 1):
    # which of them are tested is read off the compared runs (see the change family)
    return dict(zip(shares, fx.correct(tests, alpha, [1.0] * held), strict=True))


def _keeps_share(c: Comparison) -> float | None:
    """Persists: an intervention that removes the cause keeps more than PERSISTS_SHARE of
    the control's rise."""
    return PERSISTS_SHARE if c.removes_cause else None


def _reduction_share(c: Comparison) -> float | None:
    """Keeps less than PERSISTS_SHARE: an intervention predicted to lower the rise (the
    mirror of `_keeps_share`; with no rise of its own, it removes the rise)."""
    return PERSISTS_SHARE if c.predicted < 0 else None


def margin_test(pair: tuple[fx.ArmStatistic, fx.ArmStatistic] | None, predicted: int
                ) -> fx.Test | None:
    """The change beyond SUPPORT_MARGIN of the control's rise in the predicted direction,
    one-sided, paired by seed where the arms share seeds: (1 - m) x control - arm > 0 for a
    predicted reduction, arm - (1 + m) x control > 0 for a predicted increase (None without
    a prediction, or where the control's rise is not above 0)."""
    if pair is None or not predicted or pair[1].mean <= 0:
        return None  # a control that does not rise has no margin to read off
    arm, control = pair
    if predicted < 0:
        return fx.two_sample(fx.scaled(control, 1 - SUPPORT_MARGIN), arm, alternative="greater")
    return fx.two_sample(arm, fx.scaled(control, 1 + SUPPORT_MARGIN), alternative="greater")


def _survives_share(c: Comparison) -> float | None:
    """Survives: an intervention that removes the cause over the control's whole fit range
    at matched fit rises by more than the explanation allows. Where the explanation is the
    whole cause (acting in proportion), the arm's rise is the `remaining` share of the
    control's (0 where the cause is removed outright)."""
    return c.remaining if c.removes_cause and _whole_range(c) else None


def _whole_range(c: Comparison) -> bool:
    """Compared at matched fit over (nearly) all of the control's fit range after its
    onset (REMOVES_SPAN), with both arms' rises there."""
    p = c.progress
    return (c.basis == MATCHED_FIT and p is not None and p.arm_rise is not None
            and p.control_rise is not None and p.span_share >= REMOVES_SPAN)


def _share(mine: float, theirs: float) -> float:
    return min(1.0, max(0.0, mine / theirs)) if math.isfinite(mine) and math.isfinite(
        theirs) and theirs > 0 else 0.0


def _judge(c: Comparison) -> Comparison:
    """The comparison's outcome from its corrected change test, its margin test, the arm's
    rise test and, for an intervention that removes the cause, whether it keeps most of the
    rise; a dose-up on its own split from whether its lowest window comes earlier."""
    test = c.change
    persists = (c.removes_cause and c.arm_rise.significant and c.keeps is not None
                and c.keeps.significant)
    toward = _toward(c)
    if c.predicted == 0:
        outcome = NO_PREDICTION
    elif c.sooner is not None:
        # more of the cause on the arm's own split: a rise that comes sooner is larger at
        # equal steps by that alone, and a steeper one is measured from an earlier low too,
        # so the dose is decided by where its lowest window is (one-sided, Holm in the
        # family): earlier for a rise that starts sooner or is steeper, either a change no
        # per-step explanation predicts; its rise from the fixed step, smaller beyond noise,
        # is a rise that started earlier and flattens or none: then nothing is detected, or,
        # not earlier either, it counts against
        smaller = test.significant and not toward
        outcome = (AS_PREDICTED if c.sooner.significant and not smaller else
                   AGAINST if smaller and not c.sooner.significant else NO_CHANGE)
    elif persists and not (test.significant and not toward):
        # removing the cause left more than half of the rise: a reduction beyond noise that
        # small is no support (seeds 0-2 of the demo: no_lb -0.012 of 0.071, p 0.0019)
        outcome = PERSISTS
    elif toward and (c.beyond_margin is None or c.beyond_margin.significant):
        outcome = AS_PREDICTED
    elif test.significant and not toward:
        outcome = AGAINST
    elif c.survives is not None and c.survives.significant:
        # no change beyond noise and the margin, and the arm without the cause still rises:
        # the cause is not all of the rise (how much of it, if any, is undetermined)
        outcome = SURVIVES
    elif toward:
        outcome = WITHIN_MARGIN  # beyond noise, not shown beyond the margin: no support
    else:
        outcome = NO_CHANGE
    if outcome == AS_PREDICTED and c.predicted < 0 and c.basis == EQUAL_STEPS and c.decides:
        slower = _slower_or_unknown(c)
        if slower:
            return replace(c, outcome=CENSORED, censored_because=(
                f"it rises less than the control at equal steps ({test.estimate:+.3f} nats), "
                f"but {slower}, so slower fitting alone could produce that; it has not fitted "
                "far enough past the control's onset to be compared at matched fit"))
    return replace(c, outcome=outcome,
                   removes=outcome == AS_PREDICTED and c.predicted < 0 and _removes(c))


def _held_p(c: Comparison) -> float:
    """A censored comparison's place in its family: the p-value of its change at equal steps
    where it has one (a valid test of the rises there, though it decides nothing), else 1.
    An arm still falling after the step both are measured from has a tiny p: it then costs
    the tested places nothing, and the family corrects as the tested alone would."""
    return _p_or_one(c.at_equal_steps)


def _p_or_one(t: fx.Test | None) -> float:
    """A held place's p-value: the test's where it has one, else 1."""
    return t.p_value if t is not None and t.p_value is not None else 1.0


def _toward(c: Comparison) -> bool:
    """The change is beyond noise (its family's correction) in the predicted direction."""
    return c.change.significant and np.sign(c.change.estimate) == c.predicted


def _dose_up(c: Comparison) -> bool:
    """More of the cause on the arm's own train split: decided by where its low is."""
    return c.different_split and c.predicted > 0


def contributes_only(c: Comparison) -> bool:
    """The rise persists without the cause (more than half of it), and the removal still
    lowers it beyond noise and beyond the margin: the cause acts, and is not the main one."""
    return (c.outcome == PERSISTS and _toward(c)
            and c.beyond_margin is not None and c.beyond_margin.significant)


def _removes(c: Comparison) -> bool:
    """A reduction is a removal only over the control's whole rise: an arm that does not
    rise of its own, compared at matched fit over (nearly) all of the control's fit range
    after its onset (REMOVES_SPAN), that keeps less than half of the control's rise there
    (`keeps_under`: one-sided, with both arms' noise, Holm over the family's reductions,
    the mirror of "persists"). A reduction over part of the range may be a rise that comes
    later in fit; at equal steps (an arm fitting at least as fast) the arm's whole rise is
    tested the same way."""
    if c.arm_rise.significant or c.keeps_under is None or not c.keeps_under.significant:
        return False
    return c.basis != MATCHED_FIT or _whole_range(c)


def _slower_or_unknown(c: Comparison) -> str:
    """Why a lower rise at equal steps may be slower fitting only ("" when the arm fitted at
    least as far as the control: then equal steps favour it no more than matched fit)."""
    p = c.progress
    if c.different_split:
        return "its train split differs, so how far it fitted cannot be compared"
    if p is None:
        return "no train-subset loss was recorded, so how far it fitted is unknown"
    if p.arm_end_fit > p.control_end_fit:
        return (f"it fitted its train subset only to {p.arm_end_fit:.2f} where the control "
                f"reached {p.control_end_fit:.2f}")
    return ""


def _verdict(name: str, comparisons: list[Comparison], rising: tuple[str, ...],
             controls: Mapping[str, str], crossed: Sequence[str] = ()) -> HypothesisVerdict:
    """The explanation's verdict on the rise of the rising controls (each condition's
    baseline), and, scoped apart, on each crossed control's: a crossed control is another
    experiment's rise (a smaller train split), so what an intervention does there never
    stands in for, or upgrades, the verdict on the control's own rise."""
    if not rising:
        seen = ", ".join(controls.values()) or "no control (baseline) runs"
        return HypothesisVerdict(name, UNTESTED, (), (
            f"no control rises beyond noise ({seen}): there is no rise for this explanation "
            "to account for",))
    if not comparisons:
        return HypothesisVerdict(name, INCONCLUSIVE, rising, (
            f"no intervention of this explanation ran against a rising control "
            f"({', '.join(rising)})",))
    by_control: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_control.setdefault(c.control, []).append(c)
    per_control = [_control_verdict(by_control[control]) for control in rising
                   if control in by_control]
    verdict = combined_verdict(per_control) if per_control else INCONCLUSIVE
    scoped = tuple((control, _control_verdict(by_control[control])[0]) for control in crossed
                   if control in by_control)
    judged = tuple(control for control in (*rising, *crossed) if control in by_control)
    return HypothesisVerdict(name, verdict, judged, tuple(_reason(c) for c in comparisons),
                             tuple(comparisons), scoped)


def _control_verdict(mine: Sequence[Comparison]) -> tuple[str, bool]:
    """The verdict against one control (given its comparisons), and whether it rests on
    evidence (an outcome against the explanation, or support) rather than on nothing
    decided."""
    # a censored arm whose longer run (the same change, another length) was compared
    # is decided by that run
    mine = [c for c in mine if not (c.outcome == CENSORED and superseded_by(c, mine))]
    outcomes = {c.outcome for c in mine}
    evidence = bool(outcomes & {AS_PREDICTED, AGAINST, PERSISTS, SURVIVES})
    # the cause acts: a change as predicted beyond the margin, or a removal that lowers the
    # rise so and keeps more than half of it; it is the main cause where a reduction removes
    # the rise (keeps less than half over the control's whole range, no rise of its own),
    # and not where a removal keeps more
    acts = AS_PREDICTED in outcomes or any(contributes_only(c) for c in mine)
    main = any(c.removes for c in mine)
    if acts and (AGAINST in outcomes or main and PERSISTS in outcomes):
        return MIXED, evidence
    if acts and outcomes & {PERSISTS, SURVIVES}:
        # it acts, and a rise persists or survives without it: it is part of the rise
        return PART, evidence
    if AS_PREDICTED in outcomes:
        return SUPPORTED, evidence
    if outcomes & {AGAINST, PERSISTS, SURVIVES}:
        # a censored intervention that removes the cause could still show the rise
        # gone: no refutation while one is undetermined
        censored = any(c.outcome == CENSORED and c.removes_cause for c in mine)
        return (UNDETERMINED if censored else NOT_SUPPORTED
                if outcomes & {AGAINST, PERSISTS} else NOT_WHOLE), evidence
    if CENSORED in outcomes:
        return UNDETERMINED, evidence
    return INCONCLUSIVE, evidence


def combined_verdict(per_control: Sequence[tuple[str, bool]]) -> str:
    """One verdict from the verdicts against each rising control, each with whether it
    rests on evidence: a control against which nothing was decided and nothing counted
    against the explanation leaves the others' verdicts standing; where nothing was decided
    against any, undetermined if a longer run could decide against one; any disagreement
    between the rest is mixed."""
    decided = {v for v, evidence in per_control
               if evidence or v not in (UNDETERMINED, INCONCLUSIVE)}
    if not decided and {v for v, _ in per_control} == {UNDETERMINED, INCONCLUSIVE}:
        # nothing decided against any control: nothing disagrees either; a longer run
        # could decide against one of them (in a null with a control rising 0.05, 5 of 6
        # studies called mixed were these)
        return UNDETERMINED
    decided = decided or {v for v, _ in per_control}
    if decided == {NOT_SUPPORTED, NOT_WHOLE}:
        # against one control the rise persists without the cause (or moves against the
        # prediction), against another a rise of undetermined share survives: both speak
        # against the cause being the whole of the rise, and the first says more (in a null
        # where both controls rise, 38.5% of studies were called mixed so)
        return NOT_SUPPORTED
    return decided.pop() if len(decided) == 1 else MIXED


def reduces_words(c: Comparison) -> str:
    """A reduction that is not a removal, with the range it covers when that is partial."""
    p = c.progress
    if c.basis == MATCHED_FIT and p is not None and p.span_share < REMOVES_SPAN:
        return (f"reduces the rise over the first {p.span_share:.0%} of the control's fit "
                "range after its onset (whether it would come later is undetermined)")
    return "reduces the rise"


def superseded_by(c: Comparison, others: Sequence[Comparison]) -> Comparison | None:
    """Another comparison with the same control makes the same change at another run
    length, was compared (matched fit or equal steps), and still removes the cause over
    the range it was compared on where this one would have (a longer decayed schedule
    applies a high LR while it fits through the control's range: it does not answer for
    the short one)."""
    change = set(c.changed) - set(LENGTH_KEYS)
    return next((o for o in others if o is not c and o.basis and o.control == c.control
                 and set(o.changed) - set(LENGTH_KEYS) == change
                 and o.predicted == c.predicted and (o.removes_cause or not c.removes_cause)),
                None)


def _lr_over_range(curves: fx.ArmCurves, progress: MatchedProgress | None,
                   peak: float | None) -> float:
    """The mean LR (over the peak) each run applied from where it first reached the
    onset fit to where it first reached the matched fit, averaged over seeds (NaN when
    unknown)."""
    fit = fit_windows(curves)
    if progress is None or fit is None or curves.lr is None or not peak:
        return float("nan")
    values = []
    for i in range(curves.n_seeds):
        start = first_reaching(fit[i], progress.onset_fit)
        end = first_reaching(fit[i], max(progress.matched_fit, float(fit[i].min())))
        if start is None or end is None:
            continue
        lr = curves.lr[i, start:max(end, start) + curves.window]
        if np.isfinite(lr).any():
            values.append(float(np.nanmean(lr)) / peak)
    return float(np.mean(values)) if values else float("nan")


def _reason(c: Comparison) -> str:
    """One bullet: the intervention, the change of the rise with its interval and what it
    compares, the outcome."""
    t = c.change
    if c.outcome == CENSORED:
        steps = c.at_equal_steps
        at_steps = "" if steps is None or steps.ci_low is None else (
            f" At equal steps{_from_words(c)} its rise differs by {steps.estimate:+.3f} nats "
            "(95% CI "
            f"{steps.ci_low:+.3f} to {steps.ci_high:+.3f}, uncorrected): a rise not yet "
            "reached looks the same there as a rise removed.")
        return f"{c.arm} vs {c.control}: {CENSORED}: {c.censored_because}.{at_steps}"
    interval = (" (exactly 0 in every seed: identical runs, a degenerate interval)"
                if t.identical else "" if t.ci_low is None
                else f" (95% CI {t.ci_low:+.3f} to {t.ci_high:+.3f}, Holm p "
                     f"{fx.format_p(t.p_adjusted)})")
    where = (f" at matched fit (from the control's onset fit {c.progress.onset_fit:.2f} to "
             f"{c.progress.matched_fit:.2f}, train-subset loss)"
             if c.basis == MATCHED_FIT and c.progress is not None
             else f" at equal steps{_from_words(c)} (on its own train split, so with no common "
                  "scale of fit; it rises within the run" + SELECTED + ")"
             if c.basis == EQUAL_STEPS and c.different_split
             else f" at equal steps{_from_words(c)} (it rises before reaching the control's "
                  "onset fit" + SELECTED + ")" if c.basis == EQUAL_STEPS else "")
    if c.onset_shift is not None and c.onsets:
        return _dose_up_reason(c, interval)
    text = f"{c.arm} vs {c.control}: rise{where} {t.estimate:+.3f} nats{interval}"
    if c.outcome == AS_PREDICTED:
        text += (": removes the rise" if c.removes else f": {reduces_words(c)}"
                 if c.predicted < 0 else ": raises the rise, as predicted") + _margin_words(c)
    elif c.outcome == AGAINST:
        text += ": moves against the prediction"
    elif c.outcome == WITHIN_MARGIN:
        text += (f": a change beyond noise but not shown beyond {SUPPORT_MARGIN:.0%} of the "
                 f"control's rise{_margin_p(c)}: no support")
    elif c.outcome == PERSISTS:
        mine, theirs = (stat.mean for stat in c.decisive_pair)  # what its tests compared
        contributes = ("" if not contributes_only(c)
                       else f"; it lowers the rise beyond {SUPPORT_MARGIN:.0%} of it"
                            f"{_margin_p(c)}: the cause contributes, but is not the main one")
        text += (f": the rise persists ({c.arm} rises by {mine:.3f} where the control rises by "
                 f"{theirs:.3f}: it keeps more than {PERSISTS_SHARE:.0%} of it, one-sided Holm p "
                 f"{fx.format_p(c.keeps.p_adjusted)}{contributes})")
    elif c.outcome == SURVIVES:
        p = c.progress
        own = fx.one_sample(p.arm_rise, alternative="two-sided")
        allowed = ("" if c.remaining == 0 else
                   f", more than the {c.remaining:.0%} of it that the cause it still applies "
                   "would leave if it acted in proportion")
        detect = (f"; a change beyond noise, not shown beyond {SUPPORT_MARGIN:.0%} of the "
                  f"control's rise{_margin_p(c)}" if t.significant else
                  "; no change beyond noise" + ("" if t.detectable is None else
                                                 f", could detect about {t.detectable:.3f}"))
        dip = ("; measured from the onset fit, which this arm reaches soon after its LR "
               "drops, while the drop itself still lowers its val loss: if anything too low"
               if "lr_drop_at" in c.changed else "")
        text += (f": a rise survives without the cause ({c.arm}, {c.prediction_basis}, "
                 f"rises by {own.estimate:.3f} over the control's whole fit range after its "
                 f"onset (95% CI {own.ci_low:.3f} to {own.ci_high:.3f}) where the control "
                 f"rises by {p.control_rise.mean:.3f}{allowed} (one-sided Holm p "
                 f"{fx.format_p(c.survives.p_adjusted)}){dip}{detect}: the cause as removed "
                 "here is not needed for a rise; how much of the control's rise it accounts "
                 "for is undetermined)")
    elif c.outcome == NO_PREDICTION:
        text += f": no prediction ({c.prediction_basis})"
    else:
        detect = "" if t.detectable is None else f"; could detect about {t.detectable:.3f}"
        text += f": no detected change{detect}"
    if c.onsets and c.different_split:
        text += f"; {_onset_words(c)}"
    return text


def _margin_p(c: Comparison) -> str:
    t = c.beyond_margin
    return "" if t is None else f" (one-sided Holm p {fx.format_p(t.p_adjusted)})"


def _margin_words(c: Comparison) -> str:
    """What a change as predicted shows beyond noise: beyond the margin, and, for a
    reduction, whether it keeps less than half of the control's rise."""
    if c.beyond_margin is None:
        return ""
    text = (f" (beyond {SUPPORT_MARGIN:.0%} of the control's rise, one-sided Holm p "
            f"{fx.format_p(c.beyond_margin.p_adjusted)}")
    under = c.keeps_under
    if c.predicted < 0 and under is not None:
        mine, theirs = (stat.mean for stat in c.decisive_pair)
        text += (f"; it keeps {_share(mine, theirs):.0%} of it: "
                 + (f"less than {PERSISTS_SHARE:.0%}" if under.significant
                    else f"whether more or less than {PERSISTS_SHARE:.0%} is undetermined")
                 + f", one-sided Holm p {fx.format_p(under.p_adjusted)}")
    return text + ")"


def _onset_words(c: Comparison) -> str:
    """Both onsets, in steps with their seeds' range and in passes over each split."""
    (mine, low, high, passes), (theirs, their_low, their_high, their_passes) = c.onsets
    return (f"its lowest window is at step {mine:.0f} (seeds {low:.0f} to {high:.0f}), "
            f"after {passes:.1f} passes over its train split, where the control's is at step "
            f"{theirs:.0f} ({their_low:.0f} to {their_high:.0f}), after {their_passes:.1f} "
            "passes")


def turned_before_window(c: Comparison) -> float | None:
    """The arm's mean onset step where it lies before the step its rise at equal steps is
    measured from (its rise before that step is not counted); else None."""
    if c.window_from is None or not c.onsets or c.onsets[0][0] >= c.window_from:
        return None
    return c.onsets[0][0]


def _from_words(c: Comparison) -> str:
    """Where a rise at equal steps is measured from: one step, or each arm's own place and
    why; for an arm that turned before the step, that its rise before it is not counted."""
    if c.window_from is None:
        return ("" if not c.own_places_because else
                f" (each arm from where its other seeds are lowest: {c.own_places_because})")
    onset = turned_before_window(c)
    early = ("" if onset is None else
             f"; it was lowest at step {round(onset)}, so its rise before is not counted")
    return f" (from step {c.window_from} to the end{early})"


def _dose_up_reason(c: Comparison, interval: str) -> str:
    """More of the cause on the arm's own split: decided by where its lowest window is
    (steps, with passes beside), with its rise at equal steps and over equal passes."""
    shift = c.onset_shift
    sooner = c.sooner
    shift_text = ("" if shift.ci_low is None else
                  f", 95% CI {shift.ci_low:+.0f} to {shift.ci_high:+.0f}") + (
        "" if sooner is None or sooner.p_adjusted is None else
        f", sooner: one-sided Holm p {fx.format_p(sooner.p_adjusted)}")
    early = sooner is not None and sooner.significant
    verdict = ("its lowest window comes earlier in steps beyond noise, as predicted: more "
               "repetition moved the rise (a rise that starts sooner moves it earlier, and so "
               "does a steeper one from the same step; an explanation that acts per step, as "
               "the LR schedule and the balancing loss do, predicts the same curve; the passes "
               "above are descriptive)" if c.outcome == AS_PREDICTED else
               "its lowest window comes earlier beyond noise, but its rise at equal steps is "
               "smaller beyond "
               "noise (a rise that started earlier and flattens, or none): no detected change"
               if early and c.outcome == NO_CHANGE else
               "not earlier beyond noise, and its rise at equal steps is lower: against the "
               "prediction" if c.outcome == AGAINST else
               "not earlier beyond noise: no detected change")
    per_passes = "" if c.rise_per_passes is None else (
        f"; over as many passes after its onset as the control made after its own, it rises "
        f"{c.rise_per_passes[0]:.3f} where the control rises {c.rise_per_passes[1]:.3f} "
        "(mean over seeds, descriptive), where the rise at equal steps counts steps, not "
        "passes")
    return (f"{c.arm} vs {c.control}: more repetition per step, on its own train split (no "
            f"common scale of fit): {_onset_words(c)}: {shift.estimate:+.0f} "
            f"steps{shift_text}; {verdict}. "
            f"Its rise at equal steps{_from_words(c)} (it rises within the run{SELECTED}; "
            f"it decides only where smaller beyond noise): "
            f"{c.change.estimate:+.3f} nats{interval}{per_passes}")


def leader(curves: Mapping[str, fx.ArmCurves], alpha: float = fx.ALPHA) -> dict[str, Any]:
    """The arm with the lowest end loss, named only when it beats the runner-up beyond
    noise after Holm over its comparisons with every other arm on the same val split and of
    the same length."""
    by_split: dict[tuple[str | None, int], list[str]] = {}
    for arm, c in curves.items():  # end losses compare only at one length, on one val split
        by_split.setdefault((c.val_sha, int(c.steps[-1])), []).append(arm)
    arms = max(by_split.values(), key=len) if by_split else []
    if len(arms) < 2:
        return {}
    ends = {arm: fx.end_statistic(curves[arm]) for arm in arms}
    order = sorted(arms, key=lambda a: ends[a].mean)
    first = order[0]
    tests = fx.correct([fx.two_sample(ends[first], ends[a]) for a in order[1:]], alpha)
    runner_up = tests[0]
    return {"lowest": first, "runner_up": order[1], "test": runner_up,
            "named": runner_up.significant, "arms": order,
            "end_loss": {a: ends[a].mean for a in order}}


def arms_frame(analysis: StudyAnalysis) -> pd.DataFrame:
    """One row per arm with its numbers and their noise: seeds (the compared runs), end loss
    and rise (mean, SE, 95% interval, corrected p for the rise: a gated control's on its
    gate seeds, listed), late LR; for export."""
    rows = []
    for arm, curves in analysis.curves.items():
        end = fx.one_sample(fx.end_statistic(curves))
        rise = analysis.rise_tests[arm]
        gate = analysis.gates.get(arm)
        rows.append({"arm": arm, "seeds": curves.n_seeds, "is_control":
                     arm in analysis.controls.values(),
                     # the rise below is its gate runs' where it has them (never compared)
                     "gate_seeds": ",".join(map(str, gate.seeds)) if gate else "",
                     "end_loss": end.estimate, "end_loss_se": end.se,
                     "end_loss_ci_low": end.ci_low, "end_loss_ci_high": end.ci_high,
                     "rise": rise.estimate, "rise_se": rise.se, "rise_se_seeds": rise.se_seeds,
                     "rise_se_val": rise.se_val, "rise_ci_low": rise.ci_low,
                     "rise_ci_high": rise.ci_high, "rise_p_adjusted": rise.p_adjusted,
                     "rises": rise.significant, "late_lr_fraction": analysis.late_lr[arm]})
    return pd.DataFrame(rows)


def comparisons_frame(analysis: StudyAnalysis) -> pd.DataFrame:
    """One row per intervention against a control: the change of the rise with its noise
    and the outcome; for export."""
    return pd.DataFrame([{
        "control": c.control, "intervention": c.arm, "explanation": c.hypothesis,
        "changed_keys": ",".join(c.changed), "predicted": c.predicted,
        "prediction_basis": c.prediction_basis, "removes_cause": c.removes_cause,
        "change": c.change.estimate, "se": c.change.se, "df": c.change.df,
        "ci_low": c.change.ci_low, "ci_high": c.change.ci_high, "p": c.change.p_value,
        "p_adjusted": c.change.p_adjusted, "significant": c.change.significant,
        "detectable": c.change.detectable, "paired_by_seed": c.change.paired_seeds,
        "paired_by_sequence": c.change.paired_sequences, "identical": c.change.identical,
        "keeps_over_half": None if c.keeps is None else c.keeps.estimate,
        "keeps_over_half_p_adjusted": None if c.keeps is None else c.keeps.p_adjusted,
        "keeps_under_half_p_adjusted": None if c.keeps_under is None
        else c.keeps_under.p_adjusted,
        # the change beyond SUPPORT_MARGIN of the control's rise, predicted direction
        "beyond_margin_p_adjusted": None if c.beyond_margin is None
        else c.beyond_margin.p_adjusted,
        "onset_sooner_p_adjusted": None if c.sooner is None else c.sooner.p_adjusted,
        "outcome": c.outcome, "compared_at": c.basis, "decides": c.decides,
        "change_at_equal_steps": None if c.at_equal_steps is None else c.at_equal_steps.estimate,
        "change_at_equal_steps_ci_low": None if c.at_equal_steps is None
        else c.at_equal_steps.ci_low,
        "change_at_equal_steps_ci_high": None if c.at_equal_steps is None
        else c.at_equal_steps.ci_high,
        # at equal steps: the step both arms' rises are measured from (None: each arm from
        # where its other seeds are lowest, or no equal steps)
        "rise_from_step": c.window_from,
        "onset_fit": None if c.progress is None else c.progress.onset_fit,
        "arm_end_fit": None if c.progress is None else c.progress.arm_end_fit,
        "matched_fit": None if c.progress is None else c.progress.matched_fit,
        "span_share": None if c.progress is None else c.progress.span_share,
        "level_at_arm_fit": None if c.level is None else c.level.estimate,
        "below_control_lowest": None if c.below_lowest is None else c.below_lowest.estimate,
        "different_train_split": c.different_split,
        "run_length_to_decide_at_least": c.steps_to_decide,
        "censored_because": c.censored_because}
        for c in analysis.comparisons])
