"""The report's error rates, measured: studies simulated with a known truth go through the
same verdict pipeline as real runs (`moe_core.analysis.verdicts.analyse`,
`moe_core.analysis.inflection`).

A simulated run is the study's real config (preset `cpu`, the `study` suite's arms, their
real LR schedules) with val curves drawn per sequence:

    loss[t, s] = decay(p) + rise * (1 + h[s]) * ramp(p) + level + seed offset + wander(t)
                 + sequence[s] + drift[t, s] + noise[t, s]
    train[t]   = decay(q) - FIT_GAIN * q ** 1.2 + level + seed offset + noise'[t]
                 (an arm on a larger train split, fresh data: decay(q) - OWN_SPLIT_GAP + ...)

p = speed x t is the arm's progress (t the fraction of training done): an arm with speed
below 1 is the control's curve stretched in time (it only fits more slowly); q = fit_speed
x t is the progress of its train-subset fit (speed unless set), so an arm can generalise on
the control's time course while fitting its train split more slowly. ramp(p) starts at the
onset (1 - rise_fraction + delay) and grows by 1 per rise_fraction of progress.

wander is AR(1) over evals, one per run (drift[t, s] below is centred over the
sequences, so the val mean's run noise is the offset and wander alone); the curves are
drawn on the grid the noise was measured on (an eval every 4 steps, 100 evals) and
recorded at every `record_every`-th of those evals, as the preset records them
(eval_every 16: every 4th, 25 evals);
sequence[s] is each val sequence's difficulty and h[s] how much of the rise falls on it,
both properties of the split shared by every run (paired comparisons remove the first and
most of the second); drift[t, s] is a run's own slow AR(1) deviation per sequence,
noise[t, s] white. The defaults are the sizes measured on the built-in data (cpu preset, two
pilot studies; README, "Calibration"); `--noise FILE` takes sizes fitted to a study's runs
instead (moe_core.analysis.noise_fit, which also checks simulated runs against real ones).
Runs of one seed in different arms are drawn independently here, although real ones share
their initialisation and batch order: the comparisons are still paired by seed (as the
arms ran the same seeds), which is valid but costs degrees of freedom without the shared
noise it removes from real runs: the power measured here is pairing's where runs of one
seed do not correlate at all.

    python -m moe_core.analysis.calibration --studies 200     # the README's calibration table
    python -m moe_core.analysis.calibration --noise noise.json   # under a fitted noise
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from moe_core.analysis import verdicts as vd
from moe_core.analysis.inflection import INFLECTION, ar1_curves, curve_rise
from moe_core.analysis.results import OURS, Results
from moe_core.config.run_config import RunConfig, build_config, split_arm
from moe_core.config.schedule import lr_factor
from moe_core.errors import UserInputError

CONTROL = "baseline@reference_lr"
EPOCHS = 21.0  # passes over the train split at the cpu preset (fresh_data: 20x fewer)


@dataclass(frozen=True)
class Noise:
    """Sizes of the simulated noise, nats: typical values measured on the built-in data (cpu
    preset, two pilot studies of 3 and 4 seeds per arm; measured range in brackets)."""

    seed_level_sd: float = 0.01  # a run's whole curve shifted by its seed (0.005-0.026)
    wander_sd: float = 0.008  # marginal sd of a run's AR(1) wander (0.0035-0.018)
    wander_phi: float = 0.9  # its lag-1 autocorrelation between evals (0.86-0.98)
    sequence_sd: float = 0.5  # val sequences' difficulty (0.2-0.58)
    rise_spread: float = 2.0  # sd of h[s]: per-sequence rise sd / rise (1.7-2.3)
    drift_sd: float = 0.06  # a run's slow per-sequence deviation (0.04-0.10)
    noise_sd: float = 0.015  # white per sequence and eval (0.006-0.018)
    drift_phi: float | None = None  # the drift's lag-1 autocorrelation (None: wander_phi's)
    n_sequences: int = 112  # the cpu preset's val split
    # the share of a run's seed level and wander shared by the runs of its seed in every arm
    # (same initialisation and batch order; the built-in data's end losses: +0.15)
    seed_correlation: float = 0.0
    n_evals: int = 100  # the grid the noise above was measured on: an eval every 4 steps...
    record_every: int = 4  # ...of which the cpu preset (eval_every 16) records every 4th


@dataclass(frozen=True)
class Truth:
    """One arm's true curve: how much it rises over its last `rise_fraction` of training,
    a shift of its whole level, how fast it progresses (`speed`: 0.6 reaches at the end
    what the control reaches at 60% of training; `fit_speed`: its train-subset fit alone,
    default `speed`) and how much later in progress its rise starts (`delay`). Per run:
    only its first `rising_seeds` runs rise (None: all), each run's onset is shifted by a
    normal draw of sd `onset_jitter` (progress; the slope is kept, so its rise by the end
    changes with it), and its noise is `noise_scale` x the study's (seed level, wander,
    drift, white; not the train-subset loss's nor the split's sequence difficulty)."""

    rise: float = 0.0
    level: float = 0.0
    rise_fraction: float = 0.35
    speed: float = 1.0
    fit_speed: float | None = None
    delay: float = 0.0
    rising_seeds: int | None = None
    onset_jitter: float = 0.0
    noise_scale: float = 1.0


FIT_GAIN = 2.0  # how far the train-subset loss falls below the val decay by the end (nats)
TRAIN_NOISE_SD = 0.01  # white noise of the train-subset loss per eval (37 sequences)
MARGIN_RISE = 0.056  # a true rise measured as about half of a true 0.10 (see calibration_table)
OWN_SPLIT_GAP = 0.03  # fresh data: train-subset below val loss (built-in data: 3.51 vs 3.53)
# the demo's design (Makefile GATE_SEEDS, BASELINE_GATE_SEEDS): each condition's control also
# runs 4 seeds of its own that test only whether it rises (verdicts.gate_seeds)
CORRECTED_CONTROL = "baseline"
GATE_SEEDS = {CONTROL: (100, 101, 102, 103), CORRECTED_CONTROL: (104, 105, 106, 107)}


def study_arms(suite: str = "study") -> list[str]:
    """The arms of a suite in parameters/suites.yaml."""
    from moe_core.config.catalog import load_suites

    return load_suites()[suite]


def simulate_results(truths: Mapping[str, Truth], seeds: int = 3, noise: Noise = Noise(),
                     rng: np.random.Generator | None = None, preset: str = "cpu",
                     gates: Mapping[str, Sequence[int]] | None = None,
                     arm_noise: Mapping[str, Noise] | None = None) -> Results:
    """A Results of `seeds` runs per arm (seeds 0 to seeds - 1), drawn from the truths (arm ->
    Truth), and for each arm of `gates` (arm -> seeds; default none) runs of those seeds
    too, drawn from the same truth. An arm of `arm_noise` (arm -> Noise) draws its runs'
    own noise (seed level, wander, drift, white, their autocorrelations) from its Noise
    there; the split's (sequence difficulty, rise spread, grid) is always `noise`'s."""
    rng = rng or np.random.default_rng()
    n, n_seq = noise.n_evals, noise.n_sequences
    difficulty = rng.normal(0.0, noise.sequence_sd, n_seq)
    spread = 1.0 + rng.normal(0.0, noise.rise_spread, n_seq)
    fraction = np.arange(1, n + 1) / n
    kept = _recorded(noise)  # the evals a run records
    runs, evals, sequences, configs = [], [], {}, {}
    shared: dict[int, tuple[float, np.ndarray]] = {}  # seed -> its level and wander in every arm
    for arm, truth in truths.items():
        experiment, condition = split_arm(arm)
        cfg, steps, lr = _arm_setup(arm, preset, n)
        progress = truth.speed * fraction
        fit_progress = (truth.fit_speed or truth.speed) * fraction
        mean = _val_mean(truth, progress, spread, 0.0, truth.rise)
        scale = truth.noise_scale
        own = (arm_noise or {}).get(arm, noise)
        train_mean = _decay(fit_progress) - FIT_GAIN * fit_progress ** 1.2 + truth.level
        if cfg.train_documents_factor > 1:  # its own split, seen about once: no memorising,
            # so its train-subset loss stays near its val loss (as on the built-in data)
            train_mean = _decay(fit_progress) + truth.level - OWN_SPLIT_GAP
        for index, seed in enumerate((*range(seeds), *(gates or {}).get(arm, ()))):
            run_id = f"{arm}/seed{seed}"
            offset = rng.normal(0.0, scale * own.seed_level_sd)
            wander = ar1_curves(n, scale * own.wander_sd, own.wander_phi, 1, rng)[0]
            if noise.seed_correlation:  # mixed with the seed's own, at the same variance
                if seed not in shared:
                    shared[seed] = (rng.normal(0.0, noise.seed_level_sd),
                                    ar1_curves(n, noise.wander_sd, noise.wander_phi, 1, rng)[0])
                r = noise.seed_correlation
                # the shared draws are at the study's sizes: at this arm's own (the shared
                # wander keeps the study's autocorrelation)
                level, wandering = (scale * own.seed_level_sd / noise.seed_level_sd
                                    if noise.seed_level_sd else 0.0,
                                    scale * own.wander_sd / noise.wander_sd
                                    if noise.wander_sd else 0.0)
                offset = math.sqrt(1 - r) * offset + math.sqrt(r) * level * shared[seed][0]
                wander = math.sqrt(1 - r) * wander + math.sqrt(r) * wandering * shared[seed][1]
            drift = ar1_curves(n, scale * own.drift_sd, own.wander_phi
                               if own.drift_phi is None else own.drift_phi, n_seq, rng).T
            # centred over the sequences: the run's whole-curve noise is its offset and
            # wander alone (as noise_fit measures them), not also the drift's mean
            drift -= drift.mean(1, keepdims=True)
            rises = truth.rising_seeds is None or index < truth.rising_seeds
            run_mean = mean if rises and not truth.onset_jitter else _val_mean(
                truth, progress, spread,
                rng.normal(0.0, truth.onset_jitter) if truth.onset_jitter else 0.0,
                truth.rise if rises else 0.0)
            per_sequence = (run_mean + difficulty[None, :] + drift
                            + (offset + wander)[:, None]
                            + rng.normal(0.0, scale * own.noise_sd, (n, n_seq)))
            val = per_sequence.mean(1)
            train = train_mean + offset + rng.normal(0.0, TRAIN_NOISE_SD, n)
            configs[run_id] = cfg.to_dict()
            runs.append({"run_id": run_id, "experiment": experiment, "condition": condition,
                         "arm": arm, "variant": "", "group": arm, "seed": seed,
                         "source": OURS, "status": "completed",
                         "config_hash": cfg.config_hash(),
                         "val_sha": "simulated", "preset": preset,
                         "epochs_seen": EPOCHS * (1 if cfg.train_documents_factor == 1
                                                  else 1 / cfg.train_documents_factor)})
            sequences[run_id] = per_sequence[kept]
            evals.append(pd.DataFrame({
                "run_id": run_id, "experiment": experiment, "condition": condition, "arm": arm,
                "seed": seed, "source": OURS, "step": steps[kept], "fraction": fraction[kept],
                "val_loss": val[kept], "lr": np.asarray(lr)[kept],
                "train_subset_loss": train[kept]}))
    return Results(pd.DataFrame(runs), pd.concat(evals, ignore_index=True),
                   val_sequences=sequences, configs=configs)


def _val_mean(truth: Truth, progress: np.ndarray, spread: np.ndarray, shift: float,
              rise: float) -> np.ndarray:
    """An arm's mean val loss per (eval, sequence), its onset shifted by `shift` (progress)."""
    onset = 1 - truth.rise_fraction + truth.delay + shift
    ramp = np.clip((progress - onset) / truth.rise_fraction, 0, None)
    return (_decay(progress) + truth.level)[:, None] + rise * ramp[:, None] * spread[None, :]


def _recorded(noise: Noise) -> np.ndarray:
    """The indices of the simulated grid's evals a run records: every `record_every`-th,
    ending at the last."""
    return np.arange(noise.n_evals - 1, -1, -noise.record_every)[::-1]


def _decay(progress: np.ndarray) -> np.ndarray:
    """The val loss every arm falls along before any rise (nats)."""
    return 4.0 + 2.0 * np.exp(-progress / 0.12)


@functools.cache
def _arm_setup(arm: str, preset: str, n_evals: int) -> tuple[RunConfig, np.ndarray, list]:
    """The arm's real config, its eval steps and the LR it applies at them."""
    experiment, condition = split_arm(arm)
    cfg = build_config(experiment, preset, condition=condition)
    steps = np.round(np.arange(1, n_evals + 1) / n_evals * cfg.max_steps).astype(int)
    lr = [cfg.lr * lr_factor(max(1, s // cfg.grad_accum_steps), cfg) for s in steps]
    return cfg, steps, lr


# ---------------------------------------------------------------- scenarios


def null_truths(arms: Sequence[str], rise: float = 0.1) -> dict[str, Truth]:
    """Every arm a replicate of the control: the same rise, the same level."""
    return {arm: Truth(rise=rise) for arm in arms}


def study_like(arms: Sequence[str], changes: Mapping[str, Truth] | None = None,
               rise: float = 0.1) -> dict[str, Truth]:
    """The built-in data's picture: every arm under the reference's LR schedule rises by
    `rise`, the corrected schedule's arms do not (the higher floor rises by 40% of it);
    then `changes` (arm -> Truth) replace some arms. An experiment that also runs under the
    reference's schedule (no_lb: a crossed control's counterpart) follows the corrected
    baseline's truth unless changed itself: the schedule acts on it as on the baseline."""
    changes = changes or {}
    crossed = {split_arm(a)[0] for a in arms if split_arm(a)[1]}

    def default(arm: str) -> Truth:
        experiment, condition = split_arm(arm)
        if condition:
            return Truth(rise=rise)
        if experiment in crossed and experiment != vd.CONTROL_EXPERIMENT:
            return changes.get(vd.CONTROL_EXPERIMENT, Truth(rise=0.0))
        return Truth(rise=0.4 * rise if experiment == "slower_min_lr" else 0.0)
    return {arm: changes.get(arm, default(arm)) for arm in arms}


def run_scenario(truths: Mapping[str, Truth], measure: Callable[[vd.StudyAnalysis], dict],
                 studies: int, seeds: int = 3, noise: Noise = Noise(),
                 seed: int = 0, gates: Mapping[str, Sequence[int]] | None = None,
                 arm_noise: Mapping[str, Noise] | None = None) -> dict[str, float]:
    """The mean of each measured indicator over `studies` simulated studies of the demo's
    design (its control's gate seeds, GATE_SEEDS, unless `gates` says otherwise). Study i
    draws from its own generator, seeded (seed, i): the rates do not depend on how many
    processes (`processes`) share the studies. `arm_noise`: as `simulate_results` takes it."""
    global _task
    gates = GATE_SEEDS if gates is None else gates
    task = (truths, measure, seeds, noise, seed, {a: g for a, g in gates.items() if a in truths},
            arm_noise)
    if _jobs > 1 and studies > 1:
        _task = task  # read by the forked workers, which inherit it (closures do not pickle)
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(min(_jobs, studies)) as pool:
            measured = pool.map(_forked_study, range(studies),
                                chunksize=max(1, studies // (8 * _jobs)))
    else:
        measured = [_study(task, i) for i in range(studies)]
    totals: dict[str, float] = {}
    for one in measured:
        for key, value in one.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return {key: value / studies for key, value in totals.items()}


_jobs = 1  # processes that share a scenario's studies (`processes`)
_task: tuple | None = None


@contextlib.contextmanager
def processes(jobs: int) -> Iterator[None]:
    """Within it, every scenario's studies are shared by `jobs` forked processes."""
    global _jobs
    before, _jobs = _jobs, jobs
    try:
        yield
    finally:
        _jobs = before


def _study(task: tuple, index: int) -> dict:
    truths, measure, seeds, noise, seed, gates, arm_noise = task
    rng = np.random.default_rng([seed, index])
    return measure(vd.analyse(simulate_results(truths, seeds, noise, rng, gates=gates,
                                               arm_noise=arm_noise)))


def _forked_study(index: int) -> dict:
    return _study(_task, index)


# an effect claimed against one crossed control (the share of studies where that arm was a
# crossed control and one of its comparisons was significant)
CROSSED_EFFECT = "an effect on the rise of the crossed control"


# the comparisons against a control that does not rise: each explanation's family apart (the
# interaction table: does an intervention matter under either condition), never a verdict's
NOT_RISING = "against a control that does not rise"


def any_effect(analysis: vd.StudyAnalysis) -> dict[str, bool]:
    """Did the study claim anything where nothing differs? Per family: each explanation's
    comparisons against the rising controls (its verdict's family), and apart, against a
    control that does not rise (whether one was compared at all, too, for rates among
    the studies that had such a family); and anywhere in the study."""
    crossed = set(analysis.crossed)
    # a dose-up on its own split claims an effect when it turns sooner beyond noise too
    significant = [c for c in analysis.comparisons if claims_effect(c)
                   and c.control not in crossed]
    per_family = {f"an effect on {name}": any(c.hypothesis == name and c.decides
                                              for c in significant)
                  for name in vd.HYPOTHESES}
    flat = {f"an effect on {name} {NOT_RISING}": any(c.hypothesis == name and not c.decides
                                                     for c in significant)
            for name in vd.HYPOTHESES}
    apart = {control: any(claims_effect(c) for c in analysis.comparisons
                          if c.control == control) for control in crossed}
    claims = verdict_claims(analysis)
    return {**per_family, **flat,
            **{f"{name} compared {NOT_RISING}": any(
                c.hypothesis == name and not c.decides and c.basis
                for c in analysis.comparisons) for name in vd.HYPOTHESES},
            "any intervention effect (study-wide)": bool(significant),
            # each crossed control is a family of its own: its rate is the one held to 5%
            **{f"{CROSSED_EFFECT} {control}": hit for control, hit in apart.items()},
            "an effect on any crossed control's rise (all their families together)":
                any(apart.values()),
            "a leader named": bool(analysis.leader.get("named")),
            **{k: claims[k] for k in ("any explanation supported", "any explanation mixed")}}


def claims_effect(c: vd.Comparison) -> bool:
    """The comparison's change beyond noise, or, for a dose-up on its own split, its onset
    sooner beyond noise (each corrected in its family)."""
    return c.change.significant or (c.sooner is not None and c.sooner.significant)


def verdict_claims(analysis: vd.StudyAnalysis) -> dict[str, bool]:
    """Was each explanation supported (or part of the cause), any of them, and any called
    mixed. A verdict other than untested needs a control called rising, so these are
    claims made where the study judged."""
    per = {f"{name} supported": v.verdict in (vd.SUPPORTED, vd.PART)
           for name, v in analysis.verdicts.items()}
    return {**per, "any explanation supported": any(per.values()),
            "any explanation mixed": any(v.verdict == vd.MIXED
                                         for v in analysis.verdicts.values())}


MARGINAL_RISES = (0.02, 0.03, 0.05)  # true rises the control's gate passes only sometimes
MARGINAL_STUDIES = 5  # x the table's studies: a 2-point difference in a 5% rate is the question
# x the table's studies for each null (every arm alike): its rates are the bounds every
# verdict's error rate is held to, and 200 studies put a true 5% anywhere from 2.4 to 9.0%
NULL_STUDIES = 5
# names the marginal-gate rows of a design without gate seeds: the comparison for the design's
# own rows (the report leaves them out of the verdicts' error rates)
WITHOUT_GATE_SEEDS = "without gate seeds"


def judged_claims(analysis: vd.StudyAnalysis) -> dict[str, bool]:
    """Where nothing differs between arms: was the control called rising, and the verdicts'
    claims (`verdict_claims`: each needs a rising control, so a rate given a rising control
    is its rate over the studies divided by this one's)."""
    return {"control called rising": bool(analysis.rising_controls),
            **verdict_claims(analysis)}


def marginal_gate_rows(arms: Sequence[str], studies: int, seeds: int, noise: Noise
                       ) -> list[tuple[str, str, dict[str, float]]]:
    """A control that barely rises: its gate passes only sometimes. With gate seeds the
    runs that pass it are not the ones compared; without them (a study that ran none) a
    lucky pass inflates the control's rise in every comparison. Every arm rises alike here,
    the corrected schedule's control too (both controls have gate seeds in the demo's
    design). (scenario, what it should be, rates) rows, each scenario on `studies`
    studies."""
    rows = []
    for rise in MARGINAL_RISES:
        for gates, how in ((GATE_SEEDS, "both controls with gate seeds"),
                           ({}, f"{WITHOUT_GATE_SEEDS} (the gate reuses the compared runs)")):
            scenario = (f"marginal gate: every arm a replicate of a control rising {rise:.2f}, "
                        f"{how} ({studies} studies)")
            rates = run_scenario(null_truths(arms, rise), judged_claims, studies, seeds,
                                 noise, seed=15, gates=gates)
            judged = rates["control called rising"]
            rows += [(scenario, "<= 0.05 (each explanation)",
                      {f"{name} supported": rates[f"{name} supported"]
                       for name in vd.HYPOTHESES}),
                     (scenario, "reported (3 explanations, not held together)", {
                         k: rates[k] for k in ("any explanation supported",
                                               "any explanation mixed")}),
                     (scenario, "reported", {
                         "control called rising": judged,
                         "any explanation supported, given the control called rising":
                             rates["any explanation supported"] / judged if judged
                             else 0.0})]
    return rows


ONSET_JITTER = 0.05  # sd of a run's onset, a share of training (20 of 400 steps)
NOISIER = 2.5  # the interventions' noise over the control's (real arm groups: 2-4x)
SEED_CORRELATION = 0.5  # stress beyond the built-in data's +0.15


NOT_RISING_MIN_STUDIES = 30  # fewer studies with such a family: no rate of it
# the two arms that remove the balancing loss (aux_free_balance keeps a bias that balances)
BALANCING = ("no_lb@reference_lr", "aux_free_balance@reference_lr")


# the table's first scenario, its name (with its study count after it)
PLAIN_NULL = "null: every arm a replicate of the rising control"


@dataclass(frozen=True)
class NullScenario:
    """A null of the realism rows: every arm a replicate of the rising control, drawn with
    `noise` (each arm of `arm_noise` with its own), over `times` x the nulls' studies."""

    name: str
    truths: Mapping[str, Truth]
    noise: Noise
    arm_noise: Mapping[str, Noise] | None = None
    times: int = 1


def realism_nulls(arms: Sequence[str], noise: Noise,
                  arm_noise: Mapping[str, Noise] | None = None) -> list[NullScenario]:
    """The realism rows' nulls: onsets that vary from run to run, arms noisier than their
    control, runs of one seed alike across arms, and (given `arm_noise`) every fitted arm
    with its own noise. The noisier arms' null runs twice as many studies: its corrected
    control is called not rising in about a fifth of them, the studies its not-rising
    families are rated among (11 of 210 in the 953cfe4 table, not shown within tolerance:
    extended after that first look)."""
    nulls = [
        NullScenario(f"null with onset jitter: every arm a replicate of the rising control, "
                     f"each run's onset shifted (sd {ONSET_JITTER} of training)",
                     {arm: Truth(rise=0.1, onset_jitter=ONSET_JITTER) for arm in arms}, noise),
        NullScenario(f"null with heteroscedastic seeds: every arm a replicate of the rising "
                     f"control, the others' noise {NOISIER}x the control's",
                     {arm: Truth(rise=0.1, noise_scale=1.0 if arm == CONTROL else NOISIER)
                      for arm in arms}, noise, times=2),
        NullScenario(f"null with runs of one seed alike across arms (a share "
                     f"{SEED_CORRELATION} of their level and wander shared): every arm a "
                     f"replicate of the rising control", null_truths(arms),
                     replace(noise, seed_correlation=SEED_CORRELATION))]
    fitted = sorted(a for a in arm_noise or {} if a in arms)
    if fitted:
        # twice the studies: whether its rates hold 5% within the tolerance is the question
        nulls.append(NullScenario(
            f"null with each arm's own fitted noise: every arm a replicate of the rising "
            f"control, the {len(fitted)} arms fitted ({', '.join(fitted)}) drawn with their "
            f"own seed level, wander and drift, the others with the pooled noise",
            null_truths(arms), noise, arm_noise, times=2))
    return nulls


def null_rows(scenario: str, rates: Mapping[str, float], studies: int,
              least: int = NOT_RISING_MIN_STUDIES, not_rising: bool = True
              ) -> list[tuple[str, str, dict[str, float]]]:
    """A realism null's rows held to 5% (`any_effect`'s rates over `studies`): each verdict
    family, some explanation supported, and (unless `not_rising` is False) the families
    against a control that does not rise (`not_rising_rows`)."""
    return [(scenario, "<= 0.05 (family-wise)",
             {f"an effect on {name}": rates[f"an effect on {name}"]
              for name in vd.HYPOTHESES}),
            (scenario, "<= 0.05", {"any explanation supported":
                                   rates["any explanation supported"]}),
            *(not_rising_rows(scenario, rates, studies, least) if not_rising else [])]


def plain_null_rows(scenario: str, rates: Mapping[str, float], studies: int,
                    least: int = NOT_RISING_MIN_STUDIES) -> list[tuple[str, str, dict[str, float]]]:
    """The plain null's rows (every arm a replicate of the rising control; `any_effect`'s
    rates over `studies`): each family, the study-wide rate, each crossed control, a leader
    named, some explanation supported or mixed, the families against a control that does
    not rise."""
    return [
        (scenario, "<= 0.05 (family-wise)",
         {f"an effect on {name}": rates[f"an effect on {name}"] for name in vd.HYPOTHESES}),
        (scenario, "reported (every family, those against a control that does not rise too)",
         {"any intervention effect (study-wide)": rates["any intervention effect (study-wide)"]}),
        (scenario, "<= 0.05 per crossed control (reported apart)",
         {k: rates[k] for k in sorted(rates) if k.startswith(CROSSED_EFFECT)}),
        (scenario, "reported (every crossed control's family together)",
         {k: v for k, v in rates.items() if k.startswith("an effect on any crossed")}),
        (scenario, "<= 0.05", {k: rates[k] for k in ("a leader named",
                                                    "any explanation supported")}),
        (scenario, "reported", {"any explanation mixed": rates["any explanation mixed"]}),
        *not_rising_rows(scenario, rates, studies, least)]


def realism_rows(arms: Sequence[str], studies: int, seeds: int, noise: Noise,
                 arm_noise: Mapping[str, Noise] | None = None
                 ) -> list[tuple[str, str, dict[str, float]]]:
    """Where real runs differ from the simulator's plain draws: one seed of four rising, and
    the nulls of `realism_nulls`, each with its rows (`null_rows`); the per-arm null beside
    the same studies drawn with the pooled noise. (scenario, what it should be, rates)
    rows."""
    rows = []
    rates = run_scenario(
        study_like(arms, {arm: Truth(rise=0.1, rising_seeds=1) for arm in BALANCING}),
        removal_claims(BALANCING, vd.LOAD_BALANCING, persisting=True), studies, seeds,
        noise, seed=16)
    scenario = ("one seed of four rises as the control does, the other three not at all (both "
                "balancing arms that remove the loss)")
    rows += [(scenario, "<= 0.05", {"removes called": rates["removes called"]}),
             (scenario, "reported: a true reduction by three quarters, on average",
              {k: rates[k] for k in ("removes or reduces called", "called persisting",
                                     "supported")})]
    for null in realism_nulls(arms, noise, arm_noise):
        count = null.times * NULL_STUDIES * studies
        # a doubled null was first looked at on its first half (the per-arm null and its
        # pooled twin on 600 and 1000 studies while this row was designed)
        scenario = null.name + (f" ({count} studies, {EXTENDED})" if null.times > 1
                                else f" ({count} studies)")
        rates = run_scenario(null.truths, any_effect, count, seeds, null.noise, seed=17,
                             arm_noise=null.arm_noise)
        rows += null_rows(scenario, rates, count)
        if null.arm_noise:  # the same studies' draws at the pooled sizes: what per-arm
            # noise changes (a replicate of the plain null on another stream, bounded as
            # it is; its not-rising families are not rated)
            rows += null_rows(f"{scenario}: {POOLED_TWIN}",
                              run_scenario(null.truths, any_effect, count, seeds, null.noise,
                                           seed=17), count, not_rising=False)
    return rows


POOLED_TWIN = "the same studies drawn with the pooled noise"


def not_rising_rows(scenario: str, rates: Mapping[str, float], studies: int,
                    least: int = NOT_RISING_MIN_STUDIES) -> list[tuple[str, str, dict[str, float]]]:
    """From `any_effect`'s rates: for each explanation, how often it was compared against a
    control that does not rise, and its false-effect rate there among those studies (its
    own family, held to 5%), where at least `least` (NOT_RISING_MIN_STUDIES) studies had
    one."""
    rows = []
    for name in vd.HYPOTHESES:
        share = rates.get(f"{name} compared {NOT_RISING}", 0.0)
        among = round(share * studies)
        if among < max(1, least):
            continue
        rows += [(scenario, "reported", {f"{name} compared {NOT_RISING}": share}),
                 (f"{scenario}; among the studies where {name} was compared {NOT_RISING} "
                  f"({among} studies)", "<= 0.05 (family-wise)",
                  {f"an effect on {name} {NOT_RISING}":
                   rates[f"an effect on {name} {NOT_RISING}"] / share})]
    return rows


def found(arm: str, hypothesis: str) -> Callable[[vd.StudyAnalysis], dict]:
    def measure(analysis: vd.StudyAnalysis) -> dict[str, bool]:
        hits = [c for c in analysis.comparisons if c.arm == arm and c.control == CONTROL]
        return {"detected as predicted": any(c.outcome == vd.AS_PREDICTED for c in hits),
                "called persisting": any(c.outcome == vd.PERSISTS for c in hits),
                "supported": analysis.verdicts[hypothesis].verdict == vd.SUPPORTED,
                "not supported": analysis.verdicts[hypothesis].verdict == vd.NOT_SUPPORTED}
    return measure


def removal_claims(arms: Sequence[str], hypothesis: str, persisting: bool = False
                   ) -> Callable[[vd.StudyAnalysis], dict]:
    """Was any of these arms said to remove or reduce the control's rise (or, with
    `persisting`, to keep more than half of it), and was the explanation supported?"""
    def measure(analysis: vd.StudyAnalysis) -> dict[str, bool]:
        hits = [c for c in analysis.comparisons if c.arm in arms and c.control == CONTROL]
        rates = {"removes or reduces called": any(c.outcome == vd.AS_PREDICTED and
                                                  c.predicted < 0 for c in hits),
                 "removes called": any(c.removes for c in hits),
                 "supported": analysis.verdicts[hypothesis].verdict == vd.SUPPORTED}
        if persisting:
            rates["called persisting"] = any(c.outcome == vd.PERSISTS for c in hits)
        return rates
    return measure


def main_cause_claims(arms: Sequence[str], hypothesis: str
                      ) -> Callable[[vd.StudyAnalysis], dict]:
    """Where removing the cause leaves less than half of the rise: was a persisting rise or a
    removal called, and the explanation's verdict (not supported would be wrong)."""
    def measure(analysis: vd.StudyAnalysis) -> dict[str, bool]:
        hits = [c for c in analysis.comparisons if c.arm in arms and c.control == CONTROL]
        verdict = analysis.verdicts[hypothesis].verdict
        return {"part of the cause": verdict == vd.PART,
                "not supported": verdict == vd.NOT_SUPPORTED,
                "called persisting": any(c.outcome == vd.PERSISTS for c in hits),
                "removes called": any(c.removes for c in hits),
                "supported": verdict == vd.SUPPORTED}
    return measure


def lr_decision(arms: Sequence[str]) -> Callable[[vd.StudyAnalysis], dict]:
    """What the LR's deciding arms (the decayed schedule continued at its floor, the drop
    after the onset: each through the control's whole fit range at a low LR) were called,
    and the LR's verdict."""
    def measure(analysis: vd.StudyAnalysis) -> dict[str, bool]:
        hits = [c for c in analysis.comparisons if c.arm in arms and c.control == CONTROL]
        verdict = analysis.verdicts[vd.LR_SCHEDULE].verdict
        return {"a rise left without the cause called (survives or persists)":
                any(c.outcome in (vd.SURVIVES, vd.PERSISTS) for c in hits),
                "removes called": any(c.removes for c in hits),
                "supported": verdict == vd.SUPPORTED,
                "not the whole cause or not supported": verdict in (vd.NOT_WHOLE,
                                                                    vd.NOT_SUPPORTED),
                "mixed": verdict == vd.MIXED}
    return measure


def repetition_claims(arm: str) -> Callable[[vd.StudyAnalysis], dict]:
    """What more repetition per step (a smaller train split under the control's LR) was
    called against the control, and whether overfitting was supported."""
    def measure(analysis: vd.StudyAnalysis) -> dict[str, bool]:
        hits = [c for c in analysis.comparisons if c.arm == arm and c.control == CONTROL]
        return {"raises the rise called": any(c.outcome == vd.AS_PREDICTED and c.predicted > 0
                                              for c in hits),
                "overfitting supported": analysis.verdicts[vd.OVERFITTING].verdict
                == vd.SUPPORTED}
    return measure


def crossed_lr_claims(control: str, arm: str) -> Callable[[vd.StudyAnalysis], dict]:
    """What the corrected schedule was called against a crossed control (the same
    experiment under the reference's schedule), and the LR's verdict."""
    def measure(analysis: vd.StudyAnalysis) -> dict[str, bool]:
        hits = [c for c in analysis.comparisons if c.arm == arm and c.control == control]
        verdict = analysis.verdicts[vd.LR_SCHEDULE]
        return {"reduces at matched fit called": any(
                    c.outcome == vd.AS_PREDICTED and c.basis == vd.MATCHED_FIT for c in hits),
                "the rise persists called": any(c.outcome == vd.PERSISTS for c in hits),
                "crossed control judged": control in analysis.crossed,
                "supported on the crossed control's rise": dict(verdict.scoped).get(control)
                == vd.SUPPORTED,
                "supported or part of the cause (the control's rise)": verdict.verdict in (
                    vd.SUPPORTED, vd.PART)}
    return measure


def per_run_false_inflections(studies: int, noise: Noise, seed: int = 0) -> float:
    """Share of flat (no trend after a decay) runs with correlated wander labelled
    "inflection" by the single-curve test."""
    rng = np.random.default_rng(seed)
    fraction = np.arange(1, noise.n_evals + 1) / noise.n_evals
    steps = np.arange(1, noise.n_evals + 1) * 4
    decay, kept = _decay(fraction), _recorded(noise)
    hits = 0
    for _ in range(studies):
        wander = ar1_curves(noise.n_evals, noise.wander_sd, noise.wander_phi, 1, rng)[0]
        hits += curve_rise(steps[kept], (decay + wander)[kept]).verdict == INFLECTION
    return hits / studies


MARGIN_OF_PERSISTS = ("no balancing loss keeps half of the measured rise (the margin of "
                      "persists)")


def margin_of_persists(arms: Sequence[str]
                       ) -> tuple[dict[str, Truth], Callable[[vd.StudyAnalysis], dict]]:
    """The truths and the measure of MARGIN_OF_PERSISTS: both balancing arms that remove the
    loss keep half of the control's rise as measured (a true MARGIN_RISE of 0.10: the decay
    still falling under it takes about 0.008 from every measured rise)."""
    return (study_like(arms, {arm: Truth(rise=MARGIN_RISE) for arm in BALANCING}),
            removal_claims(BALANCING, vd.LOAD_BALANCING, persisting=True))


def calibration_table(studies: int = 200, seeds: int = 4, noise: Noise = Noise(),
                      effects: Sequence[float] = (0.02, 0.04, 0.06, 0.08, 0.1),
                      log: Callable[[str], None] = print,
                      arm_noise: Mapping[str, Noise] | None = None) -> pd.DataFrame:
    """Every scenario's rates, one row per (scenario, indicator); the power points use half
    as many studies as the error rates. `arm_noise` (arm -> Noise, fitted per arm) adds a
    null in which each of its arms draws its own noise."""
    arms = study_arms()
    rows = []

    def add(scenario: str, expected: str, rates: dict[str, float]) -> None:
        for indicator, rate in rates.items():
            rows.append({"scenario": scenario, "indicator": indicator, "rate": rate,
                         "what it should be": expected})
        log(f"{scenario}: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))

    nulls = NULL_STUDIES * studies
    scenario = f"{PLAIN_NULL} ({nulls} studies)"
    rates = run_scenario(null_truths(arms), any_effect, nulls, seeds, noise, seed=1)
    for row in plain_null_rows(scenario, rates, nulls):
        add(*row)
    flat = {arm: Truth(rise=0.0) for arm in arms}
    add("null: nothing rises (flat after the decay)", "<= 0.05",
        run_scenario(flat, lambda a: {"control called rising": bool(a.rising_controls),
                                      "any explanation judged": any(
                                          v.verdict != vd.UNTESTED
                                          for v in a.verdicts.values())},
                     studies, seeds, noise, seed=2))
    for scenario, expected, rates in marginal_gate_rows(arms, MARGINAL_STUDIES * studies,
                                                        seeds, noise):
        add(scenario, expected, rates)
    for scenario, expected, rates in realism_rows(arms, studies, seeds, noise, arm_noise):
        add(scenario, expected, rates)
    fresh, dropout = "fresh_data@reference_lr", "higher_dropout@reference_lr"
    # power on the control's train split (fresh data has its own: a lower rise there is
    # never a reduction at equal steps, as its fitting progress cannot be compared)
    for delta in effects:
        rates = run_scenario(study_like(arms, {dropout: Truth(rise=0.1 - delta)}),
                             found(dropout, vd.OVERFITTING), max(1, studies // 2), seeds,
                             noise, seed=3)
        add(f"dropout lowers the rise by {delta:.2f} (of 0.10), fitting as fast", "power",
            {"detected as predicted": rates["detected as predicted"]})
    # at the margin of "persists": both balancing arms that remove the loss keep half of the
    # control's rise as measured (the decay still falling under it takes about 0.008 from
    # every measured rise, so a true 0.056 of 0.10 measures as about half)
    scenario = MARGIN_OF_PERSISTS
    rates = run_scenario(*margin_of_persists(arms), studies, seeds, noise, seed=8)
    add(scenario, "<= 0.05", {k: rates[k] for k in ("called persisting", "removes called")})
    add(scenario, "reported: a true reduction by half",
        {k: rates[k] for k in ("removes or reduces called", "supported")})
    # the main cause: without the balancing loss the rise keeps 30% of the control's; the
    # rise may not be called persisting (more than half) nor the explanation not supported;
    # part of the cause (a rise survives without it) and supported are both right
    scenario = "balancing is the main cause: without the loss the rise keeps 30% (0.03 of 0.10)"
    rates = run_scenario(study_like(arms, {arm: Truth(rise=0.03) for arm in BALANCING}),
                         main_cause_claims(BALANCING, vd.LOAD_BALANCING), studies, seeds,
                         noise, seed=32)
    add(scenario, "<= 0.05", {k: rates[k] for k in ("not supported", "called persisting")})
    add(scenario, "reported: power", {k: rates[k] for k in (
        "removes called", "supported", "part of the cause")})
    vanishes = {fresh: Truth(rise=0.0), dropout: Truth(rise=0.03)}
    add("overfitting true: no rise with fresh data, dropout lowers it to 0.03",
        "supported high, not supported <= 0.05",
        run_scenario(study_like(arms, vanishes), found(dropout, vd.OVERFITTING), studies,
                     seeds, noise, seed=4))
    add("overfitting false: the rise persists with fresh data",
        "supported <= 0.05, not supported high",
        run_scenario(study_like(arms), found(fresh, vd.OVERFITTING), studies, seeds, noise,
                     seed=5))
    # removed or only delayed (issue 22): the overfitting arms never rise within the run, but
    # only because they progress more slowly; "removes" must not be called
    overfitting_arms = (fresh, dropout)
    for scenario, truth in (
            ("slows fitting: fresh data and dropout are the control stretched in time "
             "(speed 0.6: the rise would come after the end)", Truth(rise=0.1, speed=0.6)),
            ("delayed: the rise comes after the run's end, the train fit slowed to 0.6, the "
             "val loss as the control's until then", Truth(rise=0.1, delay=0.5, fit_speed=0.6)),
            ("slows fitting, past the onset but short of half its fit range (speed 0.75), "
             "rising later: on the control's curve", Truth(rise=0.1, speed=0.75)),
            ("slows fitting, past half the control's fit range after its onset (speed 0.85): "
             "on the control's curve", Truth(rise=0.1, speed=0.85)),
            ("generalises better and fits more slowly (val 0.15 lower, speed 0.6), the rise "
             "after the end", Truth(rise=0.1, speed=0.6, level=-0.15))):
        add(scenario, "<= 0.05", run_scenario(
            study_like(arms, {arm: truth for arm in overfitting_arms}),
            removal_claims(overfitting_arms, vd.OVERFITTING), studies, seeds, noise, seed=9))
    # the LR decided at matched fit: the 400-step decayed schedule is censored (it fits at
    # 0.6 of the control's pace); continued at its floor to 2x the steps (baseline_extended)
    # it fits through the control's whole range at a low LR, as does the control with its LR
    # dropped to 0.1 of peak after its onset (lr_drop_long)
    drop, continued = "lr_drop_long@reference_lr", "baseline_extended"
    deciding = (drop, continued)
    slow = {"baseline": Truth(rise=0.0, speed=0.6)}
    whole = study_like(arms, {**slow, drop: Truth(rise=0.0),
                              continued: Truth(rise=0.0, speed=1.2)})
    # also with the wander of the real runs' noisiest pairs (a paired change SE of about
    # 0.010, as between the control and the LR drop on the built-in data)
    for suffix, noisiness, seed in (
            ("", noise, 11),
            (", noise as the real drop arm's pairs (wander sd 0.012)",
             replace(noise, wander_sd=0.012), 14)):
        scenario = ("the late LR is the whole cause: no rise at a low LR (the decayed "
                    "schedule, continued at its floor; the drop after the onset)" + suffix)
        rates = run_scenario(whole, lr_decision(deciding), studies, seeds, noisiness,
                             seed=seed)
        add(scenario, "<= 0.05", {k: rates[k] for k in (
            "a rise left without the cause called (survives or persists)",
            "not the whole cause or not supported", "mixed")})
        add(scenario, "reported: power", {"supported": rates["supported"]})
    scenario = ("the late LR is no cause: every LR arm rises as the control does (the "
                "400-step decayed schedule censored)")
    no_cause = {"baseline": Truth(rise=0.1, speed=0.6), continued: Truth(rise=0.1, speed=1.2),
                "slower_min_lr": Truth(rise=0.1), drop: Truth(rise=0.1)}
    rates = run_scenario(study_like(arms, no_cause), lr_decision(deciding), studies, seeds,
                         noise, seed=12)
    add(scenario, "<= 0.05", {k: rates[k] for k in ("removes called", "supported", "mixed")})
    add(scenario, "reported: power", {k: rates[k] for k in (
        "a rise left without the cause called (survives or persists)",
        "not the whole cause or not supported")})
    scenario = ("the late LR is half the cause: at a low LR the rise is half the control's "
                "as measured")
    half = {**slow, drop: Truth(rise=MARGIN_RISE), continued: Truth(rise=MARGIN_RISE, speed=1.2)}
    rates = run_scenario(study_like(arms, half), lr_decision(deciding), studies, seeds, noise,
                         seed=13)
    add(scenario, "<= 0.05", {"removes called": rates["removes called"]})
    add(scenario, "reported", {k: rates[k] for k in (
        "a rise left without the cause called (survives or persists)", "supported",
        "not the whole cause or not supported", "mixed")})
    # the 2 x 2 (a smaller train split under both schedules). Repetition is no cause: the
    # smaller split rises as the control does, when it does; repetition is a cause: it
    # rises 3x as much, from earlier in the run
    small, small_corrected = "small_split@reference_lr", "small_split"
    if small in arms:
        for scenario, changes, expected, seed in (
                ("repetition is no cause: the smaller split rises as the control does", {},
                 "<= 0.05", 15),
                # decided by its onset, tested only where its own rise passes on the same
                # runs: a marginal rise is selected for an early-looking low window
                ("repetition acts per step: the smaller split turns at the control's step, "
                 "rising only 0.03 (its rise passes its test only sometimes)",
                 {small: Truth(rise=0.03)}, "<= 0.05", 33),
                ("repetition acts per step: the smaller split turns at the control's step, "
                 "rising only 0.05", {small: Truth(rise=0.05)}, "<= 0.05", 34),
                ("repetition is no cause, the smaller split's runs 2.5x noisier: it rises as "
                 "the control does", {small: Truth(rise=0.1, noise_scale=NOISIER)},
                 "<= 0.05", 35),
                # not a null: a larger rise is a change per-step explanations do not predict;
                # its lowest window reads earlier although the rise starts at the same step
                ("the smaller split rises 3x the control's from the control's step (steeper, "
                 "not sooner)", {small: Truth(rise=0.3)},
                 "reported: larger, the predicted direction, read as an earlier low", 36),
                ("the smaller split is the control's curve reached sooner (speed 1.67): the "
                 "rise follows how far the repeated split was fitted, as overfitting has it",
                 {**vanishes, small: Truth(rise=0.1, speed=1.67)}, "reported", 20),
                ("repetition is a cause: the smaller split rises 3x the control's, from "
                 "earlier (its last 55% of training); fresh data does not rise, dropout "
                 "lowers it to 0.03", {**vanishes, small: Truth(rise=0.3, rise_fraction=0.55)},
                 "reported: power", 16)):
            add(scenario, expected, run_scenario(study_like(arms, changes),
                                                 repetition_claims(small), studies, seeds,
                                                 noise, seed=seed))
    if small in arms and small_corrected in arms:
        # the LR acts only through the speed of fitting: on the small split the corrected
        # schedule is the crossed control's curve stretched in time (speed 0.9: through
        # about 70% of its fit range after its onset, as on the built-in data), and so is
        # every other LR arm (the 400-step decayed schedule censored)
        only_speed = {**no_cause, small: Truth(rise=0.3),
                      small_corrected: Truth(rise=0.3, speed=0.9)}
        scenario = ("the LR acts only through the speed of fitting: on the smaller split "
                    "the corrected schedule is its control stretched in time (speed 0.9)")
        rates = run_scenario(study_like(arms, only_speed),
                             crossed_lr_claims(small, small_corrected), studies, seeds, noise,
                             seed=17)
        add(scenario, "<= 0.05", {k: v for k, v in rates.items()
                                  if k not in ("crossed control judged",
                                               "the rise persists called")})
        add(scenario, "reported: the right call there",
            {"the rise persists called": rates["the rise persists called"]})
        scenario = ("on the smaller split the corrected schedule keeps 60% of the rise at "
                    "matched fit (speed 0.9), the full split's LR arms as the control")
        add(scenario, "reported", {k: v for k, v in run_scenario(
            study_like(arms, {**no_cause, small: Truth(rise=0.3),
                              small_corrected: Truth(rise=0.18, speed=0.9)}),
            crossed_lr_claims(small, small_corrected), studies, seeds, noise,
            seed=19).items() if k != "crossed control judged"})
        direct = {**half, small: Truth(rise=0.3), small_corrected: Truth(rise=0.15, speed=0.9)}
        scenario = ("the late LR is half the cause, on either split: on the smaller one the "
                    "corrected schedule halves the rise at matched fit (speed 0.9)")
        add(scenario, "reported: power", run_scenario(
            study_like(arms, direct), crossed_lr_claims(small, small_corrected), studies,
            seeds, noise, seed=18))
    # a rise that comes later in fit (its onset 0.15 of progress later), within the run: a
    # reduction over the range compared, never a removal
    later = study_like(arms, {dropout: Truth(rise=0.1, speed=0.9, delay=0.15)})
    rates = run_scenario(later, removal_claims((dropout,), vd.OVERFITTING), studies, seeds,
                         noise, seed=10)
    scenario = "dropout's rise comes later in fit (speed 0.9, onset 0.15 later), within the run"
    add(scenario, "<= 0.05", {"removes called": rates["removes called"]})
    add(scenario, "reported: a reduction over part of the range",
        {"removes or reduces called": rates["removes or reduces called"]})
    # the crossed small-split family under a null shaped like the real design: only the
    # reference schedule's control rises, and the small split rises alike under both
    # schedules (the LR no cause there); 5x the studies, for a rate near 5%
    if small in arms and small_corrected in arms:
        rates = run_scenario(study_like(arms, {small_corrected: Truth(rise=0.1)}), any_effect,
                             studies * 5, seeds, noise, seed=31)
        key = f"{CROSSED_EFFECT} {small}"  # absent: never a crossed control, no row
        add("the real design's crossed null: the small split rises alike under both "
            f"schedules ({studies * 5} studies)", "<= 0.05 per crossed control (reported apart)",
            {key: rates[key]} if key in rates else {})
    add("one flat run with correlated wander (per-run label)", "descriptive: reported",
        {"labelled inflection": per_run_false_inflections(studies * 5, noise, seed=6)})
    strong = replace(noise, wander_phi=0.95)
    add("one flat run, slower wander (phi 0.95)", "descriptive: reported",
        {"labelled inflection": per_run_false_inflections(studies * 5, strong, seed=7)})
    return pd.DataFrame(rows)


def read_noise(path: Path) -> tuple[Noise, str | None, dict[str, Noise]]:
    """A Noise from a noise_fit JSON file, the runs it was fitted to, and each arm's own
    Noise where the file has them ("arm_noise"; none in an older file). Their sizes are on
    the simulator's 4-step grid whatever grid the runs were recorded on; what a simulated
    run records (record_every) is the preset's, as in Noise()."""
    recorded = Noise().record_every
    try:
        data = json.loads(path.read_text())
        noise = replace(Noise(**data["noise"]), record_every=recorded)
        per_arm = {arm: replace(Noise(**sizes), record_every=recorded)
                   for arm, sizes in data.get("arm_noise", {}).items()}
        return noise, data.get("fitted_to"), per_arm
    except OSError as error:
        raise UserInputError(f"--noise {path}: cannot be read ({error.strerror})") from error
    except (ValueError, KeyError, TypeError) as error:
        raise UserInputError(
            f"--noise {path}: not a noise file ({type(error).__name__}: {error}); write one "
            "with `python -m moe_core.analysis.noise_fit RUNS --out FILE`") from error


# ---------------------------------------------------------------- what a row claims

# A bounded rate is shown within tolerance when its one-sided upper confidence limit is at
# most HOLD_TOLERANCE x its bound: Bradley's (1978) "liberal" criterion for a test's
# robustness (0.025 to 0.075 at a nominal 0.05), a convention of the simulation
# literature, not derived from any study's data, adopted after the 953cfe4 table's rates
# were seen (in c3813d3) and fixed before the tables drawn since (docs/calibration_plan.md,
# which also fixes their confirmation on fresh streams: moe_core.analysis.confirmation). Per
# rate: "every bounded rate within tolerance" is an intersection-union
# claim, at its level without a correction over the rates.
HOLD_TOLERANCE = 1.5
HOLD_CONFIDENCE = 0.95
# a scenario whose studies were extended after its rates were first seen: each of the two
# looks spends half the error rate
EXTENDED = "extended after a first look"
EXTENDED_CONFIDENCE = 1 - (1 - HOLD_CONFIDENCE) / 2


def row_bound(row: Mapping) -> float | None:
    """The "<= x" a calibration row should hold: its whole expectation ("<= 0.05 ...") or
    the clause that names its indicator ("supported <= 0.05, not supported high": only for
    "supported", never for "not supported" or anything else ending so)."""
    expected = str(row.get("what it should be", ""))
    found = re.match(r"<= ([0-9.]+)", expected) or re.search(
        r"(?:^|, )" + re.escape(str(row.get("indicator", ""))) + r" <= ([0-9.]+)", expected)
    return float(found.group(1)) if found else None


def row_studies(row: Mapping, table_studies: int | None) -> int | None:
    """How many studies a row counts: its scenario's "(N studies" where it says so, else
    the table's."""
    found = re.findall(r"\((\d+) studies[,)]", str(row.get("scenario", "")))
    return int(found[-1]) if found else table_studies  # the last: "...; among those (N studies)"


@dataclass(frozen=True)
class Holding:
    """A bounded row's rate against its tolerance: `upper` its one-sided upper limit
    (Clopper-Pearson) at `confidence` over its `studies`."""

    bound: float
    hits: int
    studies: int
    upper: float
    confidence: float

    @property
    def tolerance(self) -> float:
        return HOLD_TOLERANCE * self.bound

    @property
    def within(self) -> bool:
        return self.upper <= self.tolerance

    @property
    def above_p(self) -> float:
        return above_p(self.hits, self.studies, self.bound)


def holding(row: Mapping, table_studies: int | None) -> Holding | None:
    """The row's upper limit against its tolerance; None for a row with no bound or no
    study count."""
    bound, n = row_bound(row), row_studies(row, table_studies)
    if bound is None or not n:
        return None
    hits = round(float(row["rate"]) * n)
    confidence = (EXTENDED_CONFIDENCE if EXTENDED in str(row.get("scenario", ""))
                  else HOLD_CONFIDENCE)
    return Holding(bound, hits, n, upper_limit(hits, n, confidence), confidence)


def upper_limit(hits: int, studies: int, confidence: float = HOLD_CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper limit of a rate of `hits` in `studies`."""
    from scipy.stats import binomtest

    return float(binomtest(hits, studies, alternative="less").proportion_ci(confidence).high)


def above_p(hits: int, studies: int, bound: float) -> float:
    """The one-sided exact binomial p that a rate of `hits` in `studies` is above `bound`."""
    from scipy.stats import binomtest

    return float(binomtest(hits, studies, bound, alternative="greater").pvalue)


def upper_text(row: Mapping, table_studies: int | None) -> str:
    """A table cell: the bounded row's upper limit, marked where it is not within
    tolerance; empty for a row with no bound."""
    held = holding(row, table_studies)
    if held is None:
        return ""
    return f"{held.upper:.3f}" + ("" if held.within else f" (over {held.tolerance:g})")


def markdown_table(table: pd.DataFrame, studies: int | None = None,
                   text: Callable[[str], str] = str) -> str:
    """The rows as markdown, with each bounded row's one-sided upper limit (`holding`);
    `text` writes each row's words (the report passes its escaping)."""
    lines = ["| scenario | indicator | rate | should be | upper limit |",
             "| --- | --- | --- | --- | --- |"]
    for _, row in table.iterrows():
        lines.append(f"| {text(row['scenario'])} | {text(row['indicator'])} | "
                     f"{row['rate']:.3f} | {text(row['what it should be'])} | "
                     f"{upper_text(row, studies)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moe_core.analysis.calibration",
        description="Error rates of the report's verdicts on simulated studies.")
    parser.add_argument("--studies", type=int, default=200, help="studies per scenario")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per arm (the demo's)")
    parser.add_argument("--out", help="also write the table as JSON here (the report reads "
                        "moe_core/analysis/calibration_table.json, which the report quotes)")
    parser.add_argument("--noise", type=Path, help="a fitted noise (JSON from `python -m "
                        "moe_core.analysis.noise_fit RUNS --out FILE`) instead of Noise()'s")
    parser.add_argument("--jobs", type=int, default=1, help="processes sharing each "
                        "scenario's studies (the table is the same for any number)")
    args = parser.parse_args(argv)
    if args.studies < 1 or args.seeds < 2 or args.jobs < 1:
        print("calibration: --studies must be >= 1, --seeds >= 2 and --jobs >= 1",
              file=sys.stderr)
        return 2
    try:
        noise, fitted_to, arm_noise = ((Noise(), None, {}) if args.noise is None
                                       else read_noise(args.noise))
    except UserInputError as error:
        print(f"calibration: {error}", file=sys.stderr)
        return 2
    print(f"{args.studies} simulated studies per scenario, {args.seeds} seeds per arm; "
          f"noise {noise}")
    started = time.perf_counter()
    with processes(args.jobs):
        table = calibration_table(args.studies, args.seeds, noise, arm_noise=arm_noise)
    print("\n" + markdown_table(table, args.studies))
    if args.out:
        command = (f"python -m moe_core.analysis.calibration --studies {args.studies} "
                   f"--seeds {args.seeds}" + (f" --noise {args.noise}" if args.noise else ""))
        Path(args.out).write_text(json.dumps({
            "command": command, "studies": args.studies, "seeds": args.seeds,
            "noise": asdict(noise), "noise_fitted_to": fitted_to,
            "minutes": (time.perf_counter() - started) / 60,
            "rows": table.to_dict("records")}, indent=1))
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

