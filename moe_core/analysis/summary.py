"""The results table of `moe-suite view`: one row per (arm, source), numbers as mean ± sd
over seeds, in the order of the suites file."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from moe_core.analysis.results import (
    DUPLICATE,
    OURS,
    REFERENCE,
    REFERENCE_SEED_RUN,
    UNREADABLE,
    ArmGroup,
    Results,
)
from moe_core.errors import UserInputError


def experiment_order() -> list[str]:
    """Arms in the order of the suites file (the study first), then the reference's seed run."""
    try:
        from moe_core.config.catalog import load_suites

        order = [arm for members in load_suites().values() for arm in members]
    except UserInputError:
        order = []
    return list(dict.fromkeys(order)) + [REFERENCE_SEED_RUN]


def sort_experiments(names: Any) -> list[str]:
    """Unique arms (or experiments), suites-file order first, then alphabetical."""
    order = {name: i for i, name in enumerate(experiment_order())}
    return sorted(set(names), key=lambda n: (order.get(n, len(order)), str(n)))


def sort_groups(groups: Iterable[ArmGroup]) -> list[ArmGroup]:
    """Unique groups in the order of their arms (sort_experiments'), each arm's variants
    together, by label."""
    order = {name: i for i, name in enumerate(experiment_order())}
    return sorted(set(groups), key=lambda g: (order.get(g.arm, len(order)), g.label))


def _mean_sd(values: pd.Series, digits: int, pct: bool = False) -> str:
    x = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    unit = "%" if pct else ""
    if x.size == 0:
        return ""
    if x.size == 1:
        return f"{x[0]:.{digits}f}{unit}"
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}{unit}"


def _status_text(statuses: pd.Series) -> str:
    counts = statuses.fillna("unknown").value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{n} {status}" for status, n in counts.items())


SUMMARY_COLUMNS = [
    ("end_loss", "end loss (nats)", 4, False), ("final_loss", "final loss (nats)", 4, False),
    ("best_loss", "best loss (nats)", 4, False), ("best_step", "best step", 0, False),
    ("rise", "rise (nats)", 4, False), ("degradation", "final - best (nats)", 4, False),
    ("final_accuracy", "final acc (%)", 2, True), ("time_min", "time (min)", 2, False),
    ("actual_steps", "steps", 0, False), ("epochs_seen", "epochs", 2, False),
    ("final_gap", "val - train gap (nats)", 4, False),
    ("bayes_floor", "Bayes floor (nats)", 4, False),
]


def results_table(results: Results) -> pd.DataFrame:
    """One row per (group, source): with >= 2 seeds each number reads "mean ± sd" over
    seeds; `inflects` counts the runs whose own curve rises beyond its noise. Duplicates and
    unreadable files count in `status` only."""
    runs = results.runs
    rows = []
    for group in sort_groups(results.groups.values()):
        for source in (OURS, REFERENCE):
            part = runs[(runs["group"] == group.label) & (runs["source"] == source)]
            if part.empty:
                continue
            usable = part[~part["status"].isin([UNREADABLE, DUPLICATE])]
            row = {"arm": group.label, "source": source, "seeds": len(usable)}
            for column, label, digits, is_fraction in SUMMARY_COLUMNS:
                values = usable[column] * (100 if is_fraction else 1)
                row[label] = _mean_sd(values, digits)
            row["inflects"] = f"{int((usable['inflection'] == 'inflection').sum())} of " \
                              f"{len(usable)}"
            stopped = int(usable["stopped_early"].fillna(False).astype(bool).sum())
            row["early stop"] = f"{stopped} of {len(usable)}"
            row["status"] = _status_text(part["status"])
            rows.append(row)
    columns = ["arm", "source", "seeds", *(c[1] for c in SUMMARY_COLUMNS), "inflects",
               "early stop", "status"]
    return pd.DataFrame(rows, columns=columns)
