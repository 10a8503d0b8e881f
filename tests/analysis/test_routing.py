"""Routing diagnostics on constructed loads whose answers are known."""

import math

import numpy as np
import pytest
import torch

from moe_core.analysis import routing as dx
from moe_core.errors import UserInputError

# --- routing statistics --------------------------------------------------------------


def test_perfectly_balanced_routing_has_zero_violation_and_full_entropy():
    load = np.full(8, 100.0)

    assert dx.max_violation(load) == 0.0
    nats, fraction = dx.routing_entropy(load)
    assert nats == pytest.approx(math.log(8)) and fraction == pytest.approx(1.0)
    assert dx.expert_warnings(load) == []


def test_all_tokens_to_one_expert_is_violation_e_minus_1_with_dead_experts():
    load = torch.tensor([0, 0, 0, 800, 0, 0, 0, 0])

    assert dx.max_violation(load) == pytest.approx(7.0)
    assert dx.routing_entropy(load)[1] == pytest.approx(0.0)
    warnings = dx.expert_warnings(load)
    assert len(warnings) == 7
    assert all("dead" in w for w in warnings)
    assert not any("expert 3" in w for w in warnings)


def test_violation_and_warnings_are_per_layer_for_layered_loads():
    loads = np.array([[25.0, 25, 25, 25], [97, 1, 1, 1]])  # 1% < 1/(4*4) = 6.25%

    assert dx.max_violation(loads) == pytest.approx([0.0, 97 / 25 - 1])
    warnings = dx.expert_warnings(loads)
    assert len(warnings) == 3
    assert all(w.startswith("layer 1 expert") and "collapsed" in w for w in warnings)


def test_coselection_counts_match_a_hand_count():
    chosen = torch.tensor([[0, 1], [0, 2], [1, 2], [0, 1]])  # 4 tokens, top-2 of 3 experts

    matrix = dx.coselection_matrix(chosen, num_experts=3)

    by_hand = np.array([[3, 2, 1],
                        [2, 3, 1],
                        [1, 1, 2]]) / 4
    np.testing.assert_allclose(matrix, by_hand)


def test_coselection_accepts_batch_by_sequence_indices_and_is_consistent():
    rng = np.random.default_rng(13)
    chosen = np.stack([rng.permutation(8)[:2] for _ in range(2 * 16)]).reshape(2, 16, 2)

    matrix = dx.coselection_matrix(chosen, num_experts=8)

    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(matrix.sum(axis=1), 2 * np.diag(matrix))  # k partners each
    assert np.trace(matrix) == pytest.approx(2.0)  # every token picks 2 experts
    with pytest.raises(UserInputError, match="outside"):
        dx.coselection_matrix(chosen, num_experts=4)
