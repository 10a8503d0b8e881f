"""The fresh-stream confirmation of the calibration's null rows (docs/calibration_plan.md)."""
import json

import pandas as pd

from moe_core.analysis import calibration as cal
from moe_core.analysis import confirmation as conf


def test_streams_that_disagree_widen_the_limit_beyond_the_pooled_count():
    alike = conf.Confirmed("s", "i", 0.05, hits=(20, 20, 20, 20), studies=(500,) * 4)
    apart = conf.Confirmed("s", "i", 0.05, hits=(2, 38, 2, 38), studies=(500,) * 4)
    # the same pooled count, so the same Clopper-Pearson limit
    assert alike.pooled_upper == apart.pooled_upper
    assert alike.upper == alike.pooled_upper < 0.075 and alike.within
    # streams at 0.4% and 7.6%: the mean + t over 4 streams is far above the pooled limit
    assert apart.streams_upper > 0.075 > apart.pooled_upper
    assert apart.upper == apart.streams_upper and not apart.within


def test_the_homogeneity_test_finds_streams_that_differ_and_passes_streams_that_do_not():
    rows = [conf.Confirmed(conf.PLAIN, "an effect on overfitting", 0.05,
                           hits=(25, 24, 26, 25, 25, 24, 26, 25), studies=(500,) * 8),
            conf.Confirmed(conf.PLAIN, "any explanation supported", 0.05,
                           hits=(5, 45, 5, 45, 5, 45, 5, 45), studies=(500,) * 8),
            conf.Confirmed(conf.PLAIN, "a leader named", 0.05,  # not among those tested
                           hits=(0, 50, 0, 50, 0, 50, 0, 50), studies=(500,) * 8)]
    tests = conf.homogeneity(rows).set_index("indicator")
    assert list(tests.index) == ["an effect on overfitting", "any explanation supported"]
    assert tests.loc["an effect on overfitting", "p"] > 0.9
    assert tests.loc["any explanation supported", "Holm p"] < 1e-6
    assert tests.loc["any explanation supported", "dispersion"] > 5


def test_a_null_is_confirmed_only_where_its_own_bounded_row_read_above_its_bound():
    arms = cal.study_arms()
    nulls = cal.realism_nulls(arms, cal.Noise())
    jitter, noisier = nulls[0].name, nulls[1].name
    table = pd.DataFrame([
        {"scenario": f"{jitter} (1000 studies)", "indicator": "an effect on overfitting",
         "rate": 0.058, "what it should be": "<= 0.05 (family-wise)"},
        # a reported rate above 0.05 bounds nothing
        {"scenario": f"{noisier} (2000 studies)", "indicator": "x", "rate": 0.2,
         "what it should be": "reported"},
        {"scenario": f"{noisier} (2000 studies)", "indicator": "an effect on overfitting",
         "rate": 0.049, "what it should be": "<= 0.05 (family-wise)"},
        # the per-arm twin is the plain null: it chooses no realism null
        {"scenario": f"{nulls[2].name} (1000 studies): {cal.POOLED_TWIN}",
         "indicator": "an effect on overfitting", "rate": 0.07,
         "what it should be": "<= 0.05 (family-wise)"}])
    assert [n.name for n in conf.to_confirm(table, nulls)] == [jitter]


def test_a_stream_is_the_tables_scenario_drawn_with_the_stream_as_its_seed():
    arms = cal.study_arms()
    null = cal.NullScenario(conf.PLAIN, cal.null_truths(arms), cal.Noise())
    rows = conf.stream_rows(null, 1001, 3, 3, plain=True)
    rates = cal.run_scenario(null.truths, cal.any_effect, 3, 3, null.noise, seed=1001)
    by = {r["indicator"]: r for r in rows}
    for name in ("an effect on overfitting", "an effect on load balancing",
                 "a leader named", "any explanation supported"):
        assert by[name]["hits"] == round(rates[name] * 3) and by[name]["studies"] == 3
        assert by[name]["bound"] == 0.05
    # the reported rows carry no bound and are not confirmed
    assert "any intervention effect (study-wide)" not in by


def test_a_table_that_is_not_one_is_named(tmp_path, capsys):
    bad = tmp_path / "table.json"
    bad.write_text(json.dumps({"no rows": []}))
    noise = tmp_path / "noise.json"
    noise.write_text(json.dumps({"noise": {}}))
    assert conf.main(["--table", str(bad), "--noise", str(noise)]) == 2
    assert f"--table {bad}: not a calibration table" in capsys.readouterr().err
