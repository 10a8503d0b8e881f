"""Where the package's own files live: the experiment parameters, the two notebooks and the
stored calibration table. In a checkout, `parameters/` and `notebooks/` sit at its top; in
an installed wheel they travel inside the package as `moe_core/bundled/` (pyproject.toml),
so the package works from any folder after a plain `pip install .`."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parent  # meaningful only where PACKAGE_DIR is a source checkout's


def _located(name: str) -> Path:
    bundled = PACKAGE_DIR / "bundled" / name
    return bundled if bundled.is_dir() else CHECKOUT / name


PARAMETERS_DIR = _located("parameters")
NOTEBOOKS_DIR = _located("notebooks")
TRAIN_NOTEBOOK = NOTEBOOKS_DIR / "train_experiment.ipynb"
REPORT_NOTEBOOK = NOTEBOOKS_DIR / "inflection_report.ipynb"
# the table `python -m moe_core.analysis.calibration --out` writes and the report quotes
CALIBRATION_TABLE = PACKAGE_DIR / "analysis" / "calibration_table.json"
# its null rows redrawn on fresh streams (`python -m moe_core.analysis.confirmation --out`)
CALIBRATION_CONFIRMATION = PACKAGE_DIR / "analysis" / "calibration_confirmation.json"
# its post-hoc follow-up (`python -m moe_core.analysis.confirmation --margin --out`)
CALIBRATION_MARGIN = PACKAGE_DIR / "analysis" / "calibration_margin.json"
# stage 2 of docs/calibration_plan_next.md (`python -m moe_core.analysis.second_stage --out`)
CALIBRATION_SECOND_STAGE = PACKAGE_DIR / "analysis" / "calibration_second_stage.json"


def is_checkout() -> bool:
    """Whether the package runs from a source checkout (an editable install or a clone)."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "parameters").is_dir()


def project_root() -> Path:
    """The folder relative paths given to the notebooks are taken from: the checkout the
    package runs from, else the current folder (an installed package)."""
    return CHECKOUT if is_checkout() else Path.cwd()
