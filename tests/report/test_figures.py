"""The report's figures."""

import numpy as np
import pandas as pd
import pytest

from moe_core.report import figures


def test_expert_load_heatmaps_label_about_five_steps_of_a_hundred_evals():
    routing = pd.DataFrame([{"experiment": "baseline", "layer": 0, "expert": e, "step": 4 * t,
                             "load_share": 0.125} for t in range(1, 101) for e in range(8)])
    ax = figures.expert_load_heatmaps(routing, ("baseline",)).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 3 <= len(labels) <= 6 and labels[0] == "4"


def test_expert_load_is_drawn_as_the_deviation_from_one_over_e_on_a_centred_scale():
    shares = {0: 0.30, 1: 0.05}  # expert 0 overloaded, expert 1 starved, the rest near 1/8
    routing = pd.DataFrame([{"experiment": "baseline", "layer": 0, "expert": e, "step": 4 * t,
                             "load_share": shares.get(e, (1 - 0.35) / 6)}
                            for t in range(1, 11) for e in range(8)])
    ax = figures.expert_load_heatmaps(routing, ("baseline",)).axes[0]
    mesh = ax.collections[0]
    low, high = mesh.norm.vmin, mesh.norm.vmax
    assert low == pytest.approx(-high) and high == pytest.approx(0.30 - 0.125)
    values = np.asarray(mesh.get_array()).reshape(8, 10)
    assert values[0].min() > 0 > values[1].max()  # above and below balance, opposite colours
    assert mesh.norm(0.0) == pytest.approx(0.5)  # balance is the scale's middle
