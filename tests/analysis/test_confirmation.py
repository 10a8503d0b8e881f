"""The fresh-stream confirmation of the calibration's null rows (docs/calibration_plan.md)."""
import dataclasses
import json

import pandas as pd
import pytest
from scipy.stats import beta, t

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


def test_the_limits_are_the_one_sided_clopper_pearson_and_the_streams_t():
    row = conf.Confirmed("s", "i", 0.05, hits=(20, 31, 24, 27), studies=(500, 500, 500, 480))
    assert row.pooled_upper == pytest.approx(beta.ppf(0.95, 102 + 1, 1980 - 102), rel=1e-9)
    rates = [20 / 500, 31 / 500, 24 / 500, 27 / 480]
    mean, sd = sum(rates) / 4, pd.Series(rates).std(ddof=1)
    assert row.streams_upper == pytest.approx(mean + t.ppf(0.95, 3) * sd / 2, rel=1e-9)


def test_streams_pool_by_row_a_row_missing_from_a_stream_counts_no_hits_there(monkeypatch):
    """A crossed control that no study of a stream had claims nothing in that stream's
    studies (0 of all of them, as the table counts it); a not-rising family that no study
    had has no studies there (0 of 0)."""
    flat = f"an effect on overfitting {cal.NOT_RISING}"
    crossed = f"{cal.CROSSED_EFFECT} no_lb"
    drawn = {1001: [{"indicator": crossed, "bound": 0.05, "stream": 1001, "hits": 3,
                     "studies": 20},
                    {"indicator": flat, "bound": 0.05, "stream": 1001, "hits": 1, "studies": 9}],
             1002: [{"indicator": flat, "bound": 0.05, "stream": 1002, "hits": 2, "studies": 22}],
             1003: [{"indicator": crossed, "bound": 0.05, "stream": 1003, "hits": 0,
                     "studies": 20},
                    {"indicator": "c", "bound": 0.05, "stream": 1003, "hits": 1, "studies": 5}]}
    monkeypatch.setattr(conf, "stream_rows", lambda null, stream, *a: drawn[stream])
    null = cal.NullScenario("n", {}, cal.Noise())
    rows = {r.indicator: r for r in conf.confirm(null, (1001, 1002, 1003), 20, 4,
                                                 log=lambda _: None)}
    assert rows[crossed].hits == (3, 0, 0) and rows[crossed].studies == (20, 20, 20)
    # the not-rising family over the 2 streams that had it
    assert rows[flat].hits == (1, 2, 0) and rows[flat].studies == (9, 22, 0)
    assert rows[flat].streams_upper == conf.Confirmed("n", flat, 0.05, (1, 2), (9, 22)
                                                      ).streams_upper
    # fewer than NOT_RISING_MIN_STUDIES (30) studies pooled (5 + 20 + 20 for "c": it is not
    # a not-rising family, so absent counts 0 of 20; 45 pooled) ...
    assert rows["c"].studies == (20, 20, 5)
    # ... and a not-rising family with fewer than 30 in all is dropped, as in the table
    drawn[1002] = []
    rows = {r.indicator: r for r in conf.confirm(null, (1001, 1002, 1003), 20, 4,
                                                 log=lambda _: None)}
    assert flat not in rows and cal.NOT_RISING_MIN_STUDIES == 30


def test_the_plain_null_runs_on_eight_fresh_streams_a_chosen_null_on_four(tmp_path,
                                                                        monkeypatch):
    noise_file = tmp_path / "noise.json"
    noise_file.write_text(json.dumps({"noise": {}}))
    noise, _, _ = cal.read_noise(noise_file)
    jitter = cal.realism_nulls(cal.study_arms(), noise)[0].name
    stored = {"noise": dataclasses.asdict(noise), "rows": [
        {"scenario": f"{jitter} (1000 studies)", "indicator": "an effect on overfitting",
         "rate": 0.06, "what it should be": "<= 0.05 (family-wise)"}]}
    table = tmp_path / "table.json"
    table.write_text(json.dumps(stored))
    calls = []

    def fake(null, streams, per_stream, seeds, plain=False, log=print):
        calls.append((null.name, list(streams), per_stream, plain))
        return [conf.Confirmed(null.name, "any explanation supported", 0.05, (1,) * 2, (50,) * 2)]

    monkeypatch.setattr(conf, "confirm", fake)
    out = tmp_path / "out.json"
    assert conf.main(["--table", str(table), "--noise", str(noise_file), "--out", str(out)]) == 0
    assert calls == [(conf.PLAIN, list(range(1001, 1009)), 500, True),
                     (jitter, list(range(1001, 1005)), 500, False)]
    assert json.loads(out.read_text())["table"] == conf.table_digest(stored)
    # a table drawn with another noise is refused, naming both files
    table.write_text(json.dumps({**stored, "noise": {**stored["noise"], "wander_sd": 1.0}}))
    assert conf.main(["--table", str(table), "--noise", str(noise_file)]) == 2


def test_the_post_hoc_margin_row_is_drawn_on_its_own_streams_with_the_tables_scenario(
        monkeypatch):
    seen = []

    def scenario(truths, measure, studies, seeds, noise, seed=0, gates=None, arm_noise=None):
        seen.append((seed, studies, truths))
        return {"called persisting": 0.06 if seed % 2 else 0.04}

    monkeypatch.setattr(conf, "run_scenario", scenario)
    row = conf.confirm_margin(cal.Noise(), range(2001, 2005), 50, 4, log=lambda _: None)
    assert [s for s, _, _ in seen] == [2001, 2002, 2003, 2004]
    assert all(t == cal.margin_of_persists(cal.study_arms())[0] for _, _, t in seen)
    assert row.hits == (3, 2, 3, 2) and row.studies == (50,) * 4
    assert row.scenario == cal.MARGIN_OF_PERSISTS and row.bound == 0.05
