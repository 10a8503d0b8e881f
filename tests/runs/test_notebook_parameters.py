"""Specification of the notebooks' parameters: stock papermill (-p text, -y/-f YAML) and the
suite's Python values both work, and a wrong one fails with the library's one-line message."""

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import yaml
from papermill.inspection import inspect_notebook

from moe_core import paths
from moe_core.config.run_config import build_config
from moe_core.errors import UserInputError
from moe_core.runs import notebook_parameters
from moe_core.training.trainer import train

NOTEBOOKS = paths.NOTEBOOKS_DIR
TRAIN_NOTEBOOK = NOTEBOOKS / "train_experiment.ipynb"
REPORT_NOTEBOOK = NOTEBOOKS / "inflection_report.ipynb"


def papermill(notebook_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """The stock papermill command line, as a user types it."""
    return subprocess.run([sys.executable, "-m", "papermill", str(notebook_path), str(out),
                           "--no-progress-bar", *args],
                          capture_output=True, text=True, timeout=300)


def parameters_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))


# ---------------------------------------------------------------- the parameters cells


@pytest.mark.parametrize("path", [TRAIN_NOTEBOOK, REPORT_NOTEBOOK], ids=lambda p: p.stem)
def test_parameters_cell_holds_only_literal_defaults(path):
    for statement in ast.parse(parameters_cell(path)).body:
        assert isinstance(statement, ast.AnnAssign), ast.unparse(statement)
        ast.literal_eval(statement.value)  # no calls, no environment: papermill can list it


@pytest.mark.parametrize("path", [TRAIN_NOTEBOOK, REPORT_NOTEBOOK], ids=lambda p: p.stem)
def test_help_notebook_lists_every_parameter_with_its_type(path):
    names = [s.target.id for s in ast.parse(parameters_cell(path)).body]
    listed = inspect_notebook(str(path))
    assert list(listed) == names
    for name, p in listed.items():
        assert p["inferred_type_name"] in ("str", "int", "bool", "dict", "list"), name
    assert all(listed[n]["help"] for n in ("preset", "overrides", "out_dir")
               if n in listed)


def test_training_notebook_parameters_are_what_training_runs_takes():
    listed = list(inspect_notebook(str(TRAIN_NOTEBOOK)))
    assert listed == list(inspect.signature(notebook_parameters.training_runs).parameters)


# ---------------------------------------------------------------- each form of a value


@pytest.mark.parametrize("value", [
    {"dropout": 0.2, "max_steps": 8},                 # from Python (the suite) or -y/-f
    '{"dropout": 0.2, "max_steps": 8}',               # JSON text from -p
    "{dropout: 0.2, max_steps: 8}",                   # YAML text from -p
    "dropout: 0.2\nmax_steps: 8",                     # block YAML
])
def test_overrides_accept_a_dict_or_its_yaml_or_json_text(value):
    assert notebook_parameters.mapping_parameter("overrides", value) == {"dropout": 0.2,
                                                                         "max_steps": 8}


@pytest.mark.parametrize("value", [None, "", {}])
def test_empty_overrides_are_no_overrides(value):
    assert notebook_parameters.mapping_parameter("overrides", value) == {}


@pytest.mark.parametrize("value, words", [
    ("dropout=0.2", "expected a mapping of config keys"),
    ("[1, 2]", "expected a mapping of config keys"),
    (3, "expected a mapping of config keys"),
    ("{dropout: [0.2", "is not valid YAML or JSON"),
    ("{max_steps:8}", "YAML needs a space after the colon, e.g. '{max_steps: 8}'"),
])
def test_overrides_that_are_not_a_mapping_say_what_to_write(value, words):
    with pytest.raises(UserInputError, match="notebook parameter 'overrides'") as e:
        notebook_parameters.mapping_parameter("overrides", value)
    assert words in str(e.value)
    assert "papermill -p overrides" in str(e.value) or "space after the colon" in str(e.value)


def test_whole_numbers_accept_digits_as_text_and_refuse_the_rest():
    assert notebook_parameters.whole_number_parameter("seed", 3) == 3
    assert notebook_parameters.whole_number_parameter("seed", "3") == 3
    for bad in ("abc", -1, 1.5, True, None):
        with pytest.raises(UserInputError, match=r"'seed' = .*expected a whole number >= 0"):
            notebook_parameters.whole_number_parameter("seed", bad)


def test_flags_accept_booleans_and_their_usual_spellings():
    for value, expected in [(True, True), ("true", True), ("yes", True), (1, True),
                            (False, False), ("False", False), ("no", False), (0, False)]:
        assert notebook_parameters.flag_parameter("force", value) is expected
    with pytest.raises(UserInputError, match="'force' = 'maybe'.*expected True or False"):
        notebook_parameters.flag_parameter("force", "maybe")


def test_folders_accept_one_folder_a_list_or_a_yaml_list():
    assert notebook_parameters.folders_parameter("run_dirs", "runs/quick") == ["runs/quick"]
    assert notebook_parameters.folders_parameter("run_dirs", ["a", Path("b")]) == ["a", "b"]
    assert notebook_parameters.folders_parameter("run_dirs", "[runs/a, runs/b]") == ["runs/a",
                                                                                     "runs/b"]
    assert notebook_parameters.folders_parameter("run_dirs", []) == []
    with pytest.raises(UserInputError, match="'run_dirs' = 3 .*expected a folder or a list"):
        notebook_parameters.folders_parameter("run_dirs", 3)


def test_report_folders_default_to_the_environment_then_runs_all(monkeypatch):
    monkeypatch.delenv(notebook_parameters.REPORT_RUNS_ENV, raising=False)
    assert notebook_parameters.report_folders([], []) == (notebook_parameters.DEFAULT_RUN_DIRS, [])
    monkeypatch.setenv(notebook_parameters.REPORT_RUNS_ENV, f"x/a{os.pathsep}x/b")
    assert notebook_parameters.report_folders([], "ref") == (["x/a", "x/b"], ["ref"])
    assert notebook_parameters.report_folders("mine", []) == (["mine"], [])  # a given folder wins


def test_preset_empty_means_the_environment_then_cpu(monkeypatch):
    args = dict(experiment="baseline", seed=0, overrides={}, data_source="", out_dir="",
                force=False, threads=0)
    monkeypatch.delenv(notebook_parameters.PRESET_ENV, raising=False)
    assert notebook_parameters.training_run(preset="", **args).config.preset == "cpu"
    monkeypatch.setenv(notebook_parameters.PRESET_ENV, "smoke")
    assert notebook_parameters.training_run(preset="", **args).config.preset == "smoke"
    # the given preset wins
    assert notebook_parameters.training_run(preset="cpu", **args).config.preset == "cpu"


def test_training_run_puts_a_relative_out_dir_under_the_repo_and_keeps_an_absolute_one(tmp_path):
    args = dict(experiment="no_lb", preset="smoke", seed="2", overrides="{dropout: 0.0}",
                data_source="synthetic", force="false", threads=0)
    run = notebook_parameters.training_run(out_dir="", **args)
    assert run.run_dir == paths.CHECKOUT / "runs/notebook/no_lb/seed2"
    assert (run.seed, run.force, run.config.dropout) == (2, False, 0.0)
    assert notebook_parameters.training_run(out_dir=str(tmp_path), **args).run_dir == tmp_path


def test_a_seeds_list_trains_each_seed_in_its_own_folder_under_out_dir(tmp_path):
    args = dict(experiment="no_lb", preset="smoke", seed=0, overrides={}, data_source="",
                force=False, threads=0)
    runs = notebook_parameters.training_runs(seeds="[3, 1]", out_dir=str(tmp_path), **args)
    assert [(r.seed, r.run_dir) for r in runs] == [(3, tmp_path / "seed3"),
                                                   (1, tmp_path / "seed1")]
    assert runs[0].config == runs[1].config  # one config, built once
    default = notebook_parameters.training_runs(seeds=[0], out_dir="", **args)
    assert default[0].run_dir == paths.CHECKOUT / "runs/notebook/no_lb/seed0"
    for bad, says in (([0, 0], "a seed is listed twice"), ("{a: 1}", "expected a list"),
                      ([-1], "seeds")):
        with pytest.raises(UserInputError, match=says):
            notebook_parameters.training_runs(seeds=bad, out_dir="", **args)


def test_training_run_gives_the_config_error_of_the_cli():
    with pytest.raises(UserInputError) as from_cli:
        build_config("baselin", "smoke")
    with pytest.raises(UserInputError) as from_notebook:
        notebook_parameters.training_run("baselin", "smoke", 0, "", "", "", False, 0)
    assert str(from_notebook.value) == str(from_cli.value)


# ---------------------------------------------------------------- stock papermill


@pytest.mark.slow
def test_stock_papermill_trains_with_p_text_a_yaml_file_and_y_text(tmp_path):
    run_dir = tmp_path / "run"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"preset": "smoke", "out_dir": str(run_dir)}))
    done = papermill(TRAIN_NOTEBOOK, tmp_path / "out.ipynb", "-f", str(params),
                     "-y", "seed: 3\nthreads: 1", "-p", "experiment", "no_lb",
                     "-p", "overrides", '{"dropout": 0.0, max_steps: 8}', "-p", "force", "True")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["status"], metrics["seed"], metrics["actual_steps"]) == ("completed", 3, 8)
    assert metrics["config"]["dropout"] == 0.0 and metrics["config"]["name"] == "no_lb"
    # progress is tqdm's widget: the executed notebook keeps the finished bar, and the batch
    # run prints no widget text or ipywidgets warning
    widgets = nbformat.read(tmp_path / "out.ipynb", as_version=4).metadata["widgets"]
    bars = [w["state"] for w in widgets["application/vnd.jupyter.widget-state+json"]
            ["state"].values() if w["model_name"] == "FloatProgressModel"]
    assert [(bar["value"], bar["max"]) for bar in bars] == [(8, 8)]
    assert "IProgress" not in done.stderr and "HBox(" not in done.stderr + done.stdout


@pytest.mark.slow
def test_stock_papermill_shows_a_wrong_parameter_in_one_line(tmp_path):
    # the other parameters' messages are those of the functions tested above
    done = papermill(TRAIN_NOTEBOOK, tmp_path / "out.ipynb", "-p", "preset", "smoke",
                     "-p", "out_dir", str(tmp_path / "run"), "-p", "experiment", "baselin")
    assert done.returncode != 0
    with pytest.raises(UserInputError) as from_cli:
        build_config("baselin", "smoke")
    assert done.stderr.strip().splitlines()[-1] == f"ConfigError: {from_cli.value}"
    assert "Traceback" not in done.stderr.split("PapermillExecutionError")[-1]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for experiment in ("baseline", "no_lb"):
        train(build_config(experiment, "smoke", {"max_steps": 8}), seed=0,
              out_dir=root / experiment / "seed0", progress=False)
    torch.set_num_threads(threads)
    return root


@pytest.mark.slow
def test_stock_papermill_runs_the_report_on_a_folder_given_as_text(smoke_runs, tmp_path):
    out = tmp_path / "report.ipynb"
    done = papermill(REPORT_NOTEBOOK, out, "-p", "run_dirs", str(smoke_runs),
                     "-p", "reference_dirs", "[]")
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "no_lb" in text and "baseline" in text
