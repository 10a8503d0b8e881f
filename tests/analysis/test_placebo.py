"""The real-data null: replicates of the control split into a control and a placebo that
differs in a key the preset never reads, through the report's own pipeline."""

import numpy as np
import pytest

from moe_core.analysis import calibration as cal
from moe_core.analysis import placebo as pl
from moe_core.analysis import verdicts as vd
from moe_core.errors import UserInputError

CONTROL = "baseline@reference_lr"


@pytest.fixture(scope="module")
def replicates():
    return cal.simulate_results({CONTROL: cal.Truth(rise=0.1)}, 10, cal.Noise(),
                                np.random.default_rng(3))


def test_a_split_relabels_disjoint_runs_as_a_placebo_that_differs_in_one_unread_key(
        replicates):
    runs = pl.replicate_runs(replicates, CONTROL)
    split = pl.split_results(replicates, runs[:4], runs[4:8], CONTROL, pl.PLACEBO)
    groups = split.runs.groupby("group")["seed"].apply(set).to_dict()
    assert groups == {CONTROL: {0, 1, 2, 3}, "placebo@reference_lr": {4, 5, 6, 7}}
    assert set(split.evals["run_id"]) == set(runs[:8])
    placebo_config = split.configs[runs[4]]
    assert vd.changed_keys(placebo_config, split.configs[runs[0]]) == (pl.PLACEBO.key,)
    assert vd.hypothesis_of((pl.PLACEBO.key,)) == pl.PLACEBO.family
    assert replicates.configs[runs[4]].get(pl.PLACEBO.key) != pl.PLACEBO.value  # a copy


def test_placebo_splits_go_through_the_pipeline_unpaired_and_predict_nothing(replicates):
    table = pl.placebo_table(replicates, CONTROL, size=4, splits=12)
    assert len(table) == 12 and table["control rises"].all()
    assert set(table["basis"]) == {vd.MATCHED_FIT}
    assert set(table["outcome"]) == {vd.NO_PREDICTION}  # no balancing weight changed
    assert set(table["verdict"]) == {vd.INCONCLUSIVE}
    # different seeds on each side: Welch over seeds (df between 3 and 6), a real spread
    assert ((table["df"] >= 3) & (table["df"] <= 6)).all() and (table["se"] > 0).all()
    assert table["change"].std() > 0
    summary = pl.summary(table, 10)
    assert summary.loc[0, "compared"] == 1.0
    assert 0.0 <= summary.loc[0, "called significant (nominal 0.05)"] <= 0.25


def test_too_few_replicates_or_none_is_a_clear_error(replicates):
    with pytest.raises(UserInputError, match=r"10 finished runs, a split needs 24"):
        pl.placebo_table(replicates, CONTROL, size=12, splits=1)
    with pytest.raises(UserInputError, match=r"no finished runs of 'no_lb' here .*"
                                             r"baseline@reference_lr"):
        pl.placebo_table(replicates, "no_lb", splits=1)


def test_the_command_prints_the_table_and_names_a_missing_folder(tmp_path, capsys):
    assert pl.main([str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
