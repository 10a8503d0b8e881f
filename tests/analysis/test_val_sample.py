"""The val-text term checked on other samples of val text for the same models."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from moe_core.analysis import calibration as cal
from moe_core.analysis import val_sample as vs
from moe_core.errors import UserInputError

ARM = "baseline@reference_lr"


def two_samples(shift=0.0, train_noise=0.0, other_key=None, dip=0.0):
    """The arm's 3 runs scored on its own val text, and the same models (the same train
    losses) scored on another sample: each sequence redrawn, plus `shift` nats overall."""
    results = cal.simulate_results({ARM: cal.Truth(rise=0.1)}, 3, cal.Noise(),
                                   np.random.default_rng(0))
    # the train loss of each eval (simulated runs record only the train subset's)
    results = dataclasses.replace(results, evals=results.evals.assign(
        train_loss=results.evals["train_subset_loss"]))
    rng = np.random.default_rng(1)
    runs = results.runs.assign(run_id=results.runs["run_id"] + "/v1")
    evals = results.evals.assign(run_id=results.evals["run_id"] + "/v1")
    sequences, configs = {}, {}
    for run, values in results.val_sequences.items():
        other = values + rng.normal(0.0, 0.3, values.shape[1])[None, :] + shift
        other[2:5] -= dip  # an early dip on this text alone
        sequences[f"{run}/v1"] = other
        rows = evals["run_id"] == f"{run}/v1"
        evals.loc[rows, "val_loss"] = other.mean(1)
        evals.loc[rows, "train_loss"] = evals.loc[rows, "train_loss"] + train_noise
        configs[f"{run}/v1"] = {**results.configs[run], "val_sample": 1,
                                **(other_key or {})}
    return dataclasses.replace(
        results, runs=pd.concat([results.runs, runs], ignore_index=True),
        evals=pd.concat([results.evals, evals], ignore_index=True),
        val_sequences={**results.val_sequences, **sequences},
        configs={**results.configs, **configs})


def test_each_sample_s_means_and_val_se_and_the_spread_against_the_val_term():
    result = vs.check(two_samples(shift=0.05))
    assert result.seeds == (0, 1, 2) and result.identical_training == 3
    end = result.table[result.table["statistic"] == "end loss"].set_index("val_sample")
    # the second sample's text is 0.05 nats harder everywhere: its end loss says so
    assert end.loc[1, "mean over seeds"] - end.loc[0, "mean over seeds"] == pytest.approx(
        0.05, abs=0.1)
    spread = result.spread.set_index("statistic")
    assert spread.loc["end loss", "samples"] == 2
    observed = abs(end.loc[1, "mean over seeds"] - end.loc[0, "mean over seeds"]) / np.sqrt(2)
    assert spread.loc["end loss", "observed sd"] == pytest.approx(observed)
    assert spread.loc["end loss", "predicted sd (val term)"] == pytest.approx(
        np.sqrt(np.mean(end["val-text SE"] ** 2)))
    low, high = spread.loc["end loss", "95% range if the term is right"]
    assert low < 0.01 and 4.9 < high < 5.1  # chi-square on 1 df, over 1
    ratio = spread.loc["end loss", "variance ratio"]
    assert ratio == pytest.approx(observed ** 2 / spread.loc["end loss",
                                                             "predicted sd (val term)"] ** 2)
    assert spread.loc["end loss", "p (two-sided)"] == pytest.approx(
        min(1, 2 * min(stats.chi2.cdf(ratio, 1), stats.chi2.sf(ratio, 1))))
    assert "training identical on every val sample in 3 of 3 seeds" in vs.markdown(result)


def test_the_rise_is_measured_from_the_same_window_on_every_sample():
    # a deep early dip on the second sample's text alone: measured from its own lowest
    # window that sample's rise would jump by about the dip; from the own text's windows
    # the two samples' rises differ by their text's noise only
    rise = vs.check(two_samples(dip=1.0)).table.query("statistic == 'rise'")
    assert abs(rise["mean over seeds"].diff().iloc[-1]) < 0.05


def test_other_models_or_other_configs_are_caught():
    assert vs.check(two_samples(train_noise=0.01)).identical_training == 0
    with pytest.raises(UserInputError, match="differ in dropout as well as in val_sample"):
        vs.check(two_samples(other_key={"dropout": 0.3}))
    results = two_samples()
    only_own = dataclasses.replace(results, runs=results.runs[
        ~results.runs["run_id"].str.endswith("/v1")])
    with pytest.raises(UserInputError, match="val sample 0 only"):
        vs.check(only_own)
    with pytest.raises(UserInputError, match="no finished runs of 'no_lb'"):
        vs.check(results, "no_lb")
