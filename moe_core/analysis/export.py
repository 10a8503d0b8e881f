"""The study's tables as files: per run, per arm and per comparison (with their noise
columns), for tools outside this package."""

from __future__ import annotations

from pathlib import Path

from moe_core.analysis import verdicts
from moe_core.analysis.results import Results
from moe_core.errors import UserInputError
from moe_core.escape import csv_cell

EXPORT_FORMATS = ("csv", "json", "parquet")


def export_tables(results: Results, to: str | Path, fmt: str = "csv") -> list[Path]:
    """Write runs, arms and comparisons into the folder `to` as csv, json (records) or
    parquet; returns the files written."""
    if fmt not in EXPORT_FORMATS:
        raise UserInputError(f"--format {fmt}: expected one of {', '.join(EXPORT_FORMATS)}")
    tables = {"runs": results.runs}
    if len(verdicts.counted_runs(results)):
        analysis = verdicts.analyse(results)
        tables["arms"] = verdicts.arms_frame(analysis)
        tables["comparisons"] = verdicts.comparisons_frame(analysis)
    folder = Path(to)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"--to {folder} cannot be created ({e.strerror})") from None
    written = []
    for name, table in tables.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":  # a name a spreadsheet would read as a formula is quoted
            table.map(csv_cell).rename(columns=csv_cell).to_csv(path, index=False)
        elif fmt == "json":
            table.to_json(path, orient="records", indent=1)
        else:
            table.to_parquet(path, index=False)
        written.append(path)
    return written
