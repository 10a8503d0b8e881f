"""The report's figures."""

import pandas as pd

from moe_core.report import figures


def test_expert_load_heatmaps_label_about_five_steps_of_a_hundred_evals():
    routing = pd.DataFrame([{"experiment": "baseline", "layer": 0, "expert": e, "step": 4 * t,
                             "load_share": 0.125} for t in range(1, 101) for e in range(8)])
    ax = figures.expert_load_heatmaps(routing, ("baseline",)).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 3 <= len(labels) <= 6 and labels[0] == "4"
