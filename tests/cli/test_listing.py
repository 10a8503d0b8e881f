"""`moe-suite list`: the experiments, what each changes, the suites."""

from suite_helpers import (
    suite_cli,
)

from moe_core.config.run_config import load_experiment

REFERENCE_NINE = ["baseline", "early_stopping", "constant_lr", "lower_lb_weight", "no_lb",
                  "higher_dropout", "linear_decay", "slower_min_lr", "short_run"]


def test_list_shows_the_nine_reference_experiments_with_descriptions_and_changes(capsys):
    code, out, _ = suite_cli(capsys, "list")
    assert code == 0
    for name in REFERENCE_NINE:
        description = load_experiment(name)["description"]
        assert f"{name}" in out and description in out
    assert "changes: lr_schedule=\"constant\"" in out
    assert "changes: load_balancing_weight=0.001" in out
    # the listing follows the reference order, baseline first
    assert out.index("baseline") < out.index("early_stopping") < out.index("short_run")


def test_list_shows_the_named_suites(capsys):
    _, out, _ = suite_cli(capsys, "list")
    suites = out.split("Suites", 1)[1]
    assert "quick" in suites and "baseline, early_stopping, lower_lb_weight, no_lb" in suites
    assert "reference" in suites and "(9)" in suites
