"""Stage 2 of docs/calibration_plan_next.md: which rows it redraws, how, and its outcome."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta, t

from moe_core.analysis import calibration as cal
from moe_core.analysis import confirmation as conf
from moe_core.analysis import second_stage as s2
from moe_core.errors import UserInputError

NOISY = f"an effect on overfitting {cal.NOT_RISING}"


def _nulls():
    arms = cal.study_arms()
    return (cal.realism_nulls(arms, cal.Noise()),
            cal.NullScenario(cal.PLAIN_NULL, cal.null_truths(arms), cal.Noise()))


def _table(noisier: str, hits: int = 18) -> pd.DataFrame:
    """A table with the noisier null's not-rising overfitting family at `hits` of 345, the
    share it was compared there, a family row and the margin row at 9 of 200."""
    among = (f"{noisier} (2000 studies, {cal.EXTENDED}); among the studies where overfitting "
             f"was compared {cal.NOT_RISING} (345 studies)")
    return pd.DataFrame([
        *[{"scenario": f"{noisier} (2000 studies, {cal.EXTENDED})",
           "indicator": f"{name} compared {cal.NOT_RISING}", "rate": 0.1725,
           "what it should be": "reported"} for name in ("overfitting", "the LR schedule")],
        {"scenario": among, "indicator": NOISY, "rate": hits / 345,
         "what it should be": "<= 0.05 (family-wise)"},
        {"scenario": f"{noisier} (2000 studies, {cal.EXTENDED})",
         "indicator": "an effect on overfitting", "rate": 0.05,
         "what it should be": "<= 0.05 (family-wise)"},
        {"scenario": cal.MARGIN_OF_PERSISTS, "indicator": "called persisting",
         "rate": 9 / 200, "what it should be": "<= 0.05"}])


def test_a_pass_rate_falls_with_the_true_rate_and_a_row_at_the_tolerance_rarely_passes():
    rates = [s2.pass_rate(p, draws=4000) for p in (0.03, 0.05, 0.06, 0.075)]
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > 0.99 and rates[-1] < 0.025  # at most half the 5% at the tolerance
    # more studies per stream: a calibrated row passes more often
    assert s2.pass_rate(0.055, per_stream=400, draws=4000) > s2.pass_rate(0.055, draws=4000)


def test_a_pass_rate_is_the_larger_of_the_two_limits_against_the_tolerance():
    """Against a direct count over the same draws: one stage 2 of 3 streams x 40."""
    draws, streams, n = 500, 3, 40
    hits = np.random.default_rng(7).binomial(np.full((draws, streams), n), 0.05)
    passed = 0
    for row in hits:
        pooled = beta.ppf(0.975, row.sum() + 1, streams * n - row.sum())
        r = row / n
        passed += max(pooled, r.mean() + t.ppf(0.975, streams - 1) * r.std(ddof=1)
                      / np.sqrt(streams)) <= 0.075
    assert s2.pass_rate(0.05, streams=streams, per_stream=n, draws=draws,
                        seed=7) == passed / draws


def test_stage_one_is_the_tables_rows_whose_upper_limit_at_975_is_over_the_tolerance():
    nulls, _ = _nulls()
    table = _table(nulls[1].name)
    # 18 of 345: 0.081 at 97.5%; the margin row 9 of 200: 0.084 at 97.5% (0.079 at 95%)
    short = {r["indicator"]: r for r in s2.stage_one(table, 200)}
    assert set(short) == {NOISY, "called persisting"}
    assert short[NOISY]["upper"] == pytest.approx(beta.ppf(0.975, 19, 345 - 18))
    assert s2.stage_one(_table(nulls[1].name, hits=10), 200)[0]["indicator"] != NOISY


def test_redraws_size_a_not_rising_family_by_its_share_and_add_the_confirmations_rows():
    nulls, plain = _nulls()
    noisier = nulls[1].name
    confirmed = [{"scenario": noisier, "indicator": f"an effect on the LR schedule "
                  f"{cal.NOT_RISING}", "within": False},
                 {"scenario": cal.PLAIN_NULL, "indicator": "a leader named", "within": True}]
    chosen = {r.scenario: r for r in s2.redraws(_table(noisier), 200, confirmed, nulls,
                                                plain)}
    assert set(chosen) == {noisier, cal.MARGIN_OF_PERSISTS}
    # 250 / 0.1725 = 1,449: 1,500 per stream
    assert chosen[noisier].per_stream == 1500 and chosen[noisier].null is nulls[1]
    assert chosen[noisier].judged == {
        NOISY: "stage 1", f"an effect on the LR schedule {cal.NOT_RISING}": "confirmation"}
    assert chosen[cal.MARGIN_OF_PERSISTS].per_stream == 250
    assert chosen[cal.MARGIN_OF_PERSISTS].null is None


def test_the_pooled_twin_is_redrawn_as_the_plain_null_and_another_scenario_is_refused():
    nulls, plain = _nulls()
    twin = [{"scenario": f"{nulls[-1].name} (2000 studies): {cal.POOLED_TWIN}",
             "indicator": "an effect on overfitting", "within": False}]
    (redraw,) = s2.redraws(pd.DataFrame(columns=["scenario", "indicator", "rate",
                                                 "what it should be"]), 200, twin, nulls,
                           plain)
    assert redraw.null is plain and redraw.plain and redraw.per_stream == 250
    other = [{"scenario": "dropout's rise comes later in fit", "indicator": "removes called",
              "within": False}]
    with pytest.raises(UserInputError, match="cannot redraw the scenario \"dropout's rise"):
        s2.redraws(pd.DataFrame(columns=["scenario"]), 200, other, nulls, plain)


def test_the_outcome_is_met_only_when_every_judged_row_is_within_and_no_rate_is_beyond():
    nulls, _ = _nulls()
    table = _table(nulls[1].name)

    def record(indicator, hits, per=250):
        return conf.Confirmed("n", indicator, 0.05, (hits,) * 8, (per,) * 8, 0.975).record()

    judged = [{"scenario": "n", "indicator": "a"}]
    assert s2.outcome(table, 200, [record("a", 10), record("b", 12)], judged).met
    # a judged row not within: 18 of 250 on every stream (7.2%)
    late = s2.outcome(table, 200, [record("a", 18), record("b", 10)], judged)
    assert (late.judged, late.within, late.met) == (1, 0, False)
    # a judged row that was not drawn is not within, never dropped
    absent = s2.outcome(table, 200, [record("b", 10)], judged)
    assert (absent.judged, absent.within, absent.missing, absent.met) == (1, 0, ("a",), False)
    # an unjudged row far above its bound: beyond noise after Holm over every rate
    beyond = s2.outcome(table, 200, [record("a", 10), record("b", 40)], judged)
    assert beyond.within == beyond.judged and beyond.smallest_holm_p < 0.05 and not beyond.met
    assert beyond.tested == 3 + 2  # the table's three bounded rows and stage 2's two


def test_the_burnt_draws_are_pooled_into_the_sensitivity_reading_only():
    row = conf.Confirmed("n", "called persisting", 0.05, (10,) * 8, (250,) * 8, 0.975).record()
    pooled = s2.with_burnt(row)
    hits, studies = s2.BURNT["called persisting"]
    assert (pooled["hits"], pooled["studies"]) == (80 + hits, 2000 + studies)
    assert pooled["upper"] == pytest.approx(beta.ppf(0.975, 81 + hits, 2000 + studies - 80
                                                     - hits))
    assert s2.with_burnt({**row, "indicator": "an effect on overfitting"}) is None


def _files(tmp_path, confirmed=()):
    noise_file = tmp_path / "noise.json"
    noise_file.write_text(json.dumps({"noise": {}}))
    noise, _, _ = cal.read_noise(noise_file)
    nulls, _ = _nulls()
    stored = {"noise": dataclasses.asdict(noise), "studies": 200, "seeds": 4,
              "rows": _table(nulls[1].name).to_dict("records")}
    table = tmp_path / "table.json"
    table.write_text(json.dumps(stored))
    confirmation = tmp_path / "confirmation.json"
    confirmation.write_text(json.dumps({"table": conf.table_digest(stored),
                                        "rows": list(confirmed)}))
    return stored, ["--table", str(table), "--noise", str(noise_file), "--confirmation",
                    str(confirmation)]


def _fakes(monkeypatch, calls):
    def fake_confirm(null, streams, per_stream, seeds, plain=False, log=print, confidence=0.95):
        calls.append((null.name, list(streams), per_stream, confidence))
        return [conf.Confirmed(null.name, NOISY, 0.05, (10,) * 8, (250,) * 8, confidence)]

    def fake_margin(noise, streams, per_stream, seeds, log=print, confidence=0.95):
        calls.append(("margin", list(streams), per_stream, confidence))
        return conf.Confirmed(cal.MARGIN_OF_PERSISTS, "called persisting", 0.05, (9,) * 8,
                              (250,) * 8, confidence)

    monkeypatch.setattr(s2, "confirm", fake_confirm)
    monkeypatch.setattr(s2, "confirm_margin", fake_margin)


def test_stage_two_draws_each_scenario_on_its_own_fresh_streams_at_975(tmp_path, monkeypatch):
    stored, args = _files(tmp_path)
    calls = []
    _fakes(monkeypatch, calls)
    out = tmp_path / "stage2.json"
    assert s2.main([*args, "--out", str(out)]) == 0
    noisier = _nulls()[0][1].name
    assert calls == [(noisier, list(range(4001, 4009)), 1500, 0.975),
                     ("margin", list(range(4101, 4109)), 250, 0.975)]
    written = json.loads(out.read_text())
    assert written["table"] == conf.table_digest(stored) and "trial" not in written
    assert [r["judged"] for r in written["rows"]] == ["stage 1", "stage 1"]
    assert [j["streams"] for j in written["judged"]] == [[4001, 4008], [4101, 4108]]
    assert written["rows"][1]["with the burnt draws"]["studies"] == 2000 + 16
    assert written["outcome"]["met"] and written["outcome"]["judged"] == 2


def test_a_trial_of_the_code_never_draws_the_plans_streams(tmp_path, monkeypatch):
    _, args = _files(tmp_path)
    calls = []
    _fakes(monkeypatch, calls)
    out = tmp_path / "trial.json"
    assert s2.main([*args, "--counted", "2", "--out", str(out)]) == 0
    assert [c[1][0] for c in calls] == [9001, 9101]
    assert "not the plan's stage 2" in json.loads(out.read_text())["trial"]


def test_stage_two_refuses_another_tables_confirmation_and_other_seeds(tmp_path, monkeypatch,
                                                                       capsys):
    _, args = _files(tmp_path)
    _fakes(monkeypatch, [])
    assert s2.main([*args, "--seeds", "3"]) == 2
    assert "drawn with 4 seeds per arm" in capsys.readouterr().err
    other = tmp_path / "confirmation.json"
    other.write_text(json.dumps({"table": "0" * 16, "rows": []}))
    assert s2.main(args) == 2
    assert "was made from another table" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the confirmation is required
        s2.main(args[:4])
