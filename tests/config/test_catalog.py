"""The catalog: seed lists and the named suites."""

import pytest

from moe_core.config import catalog
from moe_core.errors import UserInputError

REFERENCE_NINE = ["baseline", "early_stopping", "constant_lr", "lower_lb_weight", "no_lb",
                  "higher_dropout", "linear_decay", "slower_min_lr", "short_run"]


def test_seed_count_means_seeds_from_zero_and_a_comma_list_means_exactly_those():
    assert catalog.parse_seeds("3") == [0, 1, 2]
    assert catalog.parse_seeds("0,4,7") == [0, 4, 7]
    assert catalog.parse_seeds("5,") == [5]
    for bad in ("0", "-1", "a", "1,x", ""):
        with pytest.raises(UserInputError, match="--seeds"):
            catalog.parse_seeds(bad)


def test_all_and_quick_are_the_suites_of_those_names():
    suites = catalog.load_suites()
    assert catalog.resolve_experiments(suite="quick") == suites["quick"]
    assert set(REFERENCE_NINE) <= set(catalog.resolve_experiments(suite="all"))
    assert catalog.resolve_experiments(suite="reference") == REFERENCE_NINE
