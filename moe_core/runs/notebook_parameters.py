"""The notebooks' parameters as stock papermill hands them over, and user mistakes in one line.

`papermill -p` gives text, numbers or booleans; `-y`/`-f` give YAML values; the suite gives
Python values. The parameters cells hold only defaults (so `papermill --help-notebook`
lists them); the cell after calls these functions, which accept each form, apply the
environment's defaults (MOE_NOTEBOOK_PRESET, MOE_REPORT_RUNS: how nbval and CI run the
notebooks) and raise `UserInputError` naming the parameter for anything else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from moe_core.config.run_config import RunConfig, build_config
from moe_core.errors import UserInputError
from moe_core.paths import project_root

DEFAULT_PRESET = "cpu"
PRESET_ENV = "MOE_NOTEBOOK_PRESET"
DEFAULT_RUN_DIRS = ["runs/study"]
REPORT_RUNS_ENV = "MOE_REPORT_RUNS"


def brief_user_errors() -> None:
    """In an IPython kernel, show a `UserInputError` as its one-line message, as the CLIs do;
    the cell still fails (papermill stops and reports it). Outside IPython: nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def one_line(shell, etype, evalue, tb, tb_offset=None):
        # _showtraceback is IPython's hook for where a traceback goes (ipykernel sends it to
        # the frontend as the cell's error); showtraceback(exception_only=True) would add a
        # line about %tb
        shell._showtraceback(etype, evalue, shell.InteractiveTB.get_exception_only(etype, evalue))

    shell.set_custom_exc((UserInputError,), one_line)


def _described(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def text_parameter(name: str, value: Any) -> str:
    """A string; a number papermill typed from `-p` text (a folder named 2024) is its text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Path)) and not isinstance(value, bool):
        return str(value)
    raise UserInputError(f"notebook parameter '{name}' = {_described(value)}: expected text")


def whole_number_parameter(name: str, value: Any, minimum: int = 0) -> int:
    """An int >= minimum, or its digits as text (`-r`, or YAML '3')."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserInputError(f"notebook parameter '{name}' = {_described(value)}: expected a "
                             f"whole number >= {minimum}, e.g. papermill -p {name} {minimum + 1}")
    return value


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0", "")


def flag_parameter(name: str, value: Any) -> bool:
    """True/False, or text papermill left untyped: true/yes/1, false/no/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE + _FALSE:
        return str(value).strip().lower() in _TRUE
    raise UserInputError(f"notebook parameter '{name}' = {_described(value)}: expected True "
                         f"or False, e.g. papermill -p {name} True")


def _yaml_text(name: str, text: str, example: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0]
        raise UserInputError(f"notebook parameter '{name}' = {text!r} is not valid YAML or "
                             f"JSON ({problem}); e.g. {example}") from None


def mapping_parameter(name: str, value: Any) -> dict[str, Any]:
    """A dict, or YAML/JSON text of one (`'{dropout: 0.2}'`, `'{"dropout": 0.2}'`);
    None or empty text is {}."""
    example = f"papermill -p {name} '{{dropout: 0.2, max_steps: 200}}'"
    if isinstance(value, str):
        value = _yaml_text(name, value, example)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserInputError(f"notebook parameter '{name}' = {_described(value)}: expected a "
                             f"mapping of config keys to values, as YAML or JSON text; "
                             f"e.g. {example}")
    glued = [k for k, v in value.items() if v is None and ":" in k]
    if glued:  # YAML reads '{max_steps:0}' as the key 'max_steps:0' without a value
        raise UserInputError(f"notebook parameter '{name}': key '{glued[0]}' has no value; "
                             "YAML needs a space after the colon, e.g. "
                             f"'{{{glued[0].replace(':', ': ', 1)}}}'")
    return dict(value)


def folders_parameter(name: str, value: Any) -> list[str]:
    """A list of folders; one folder as text; or a YAML/JSON list as text (`'[runs/a, runs/b]'`)."""
    example = f"papermill -p {name} runs/quick, or -p {name} '[runs/a, runs/b]'"
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _yaml_text(name, value, example)
    elif isinstance(value, (str, Path)):
        value = [value] if str(value) else []
    if not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, (str, Path)) and str(v) for v in value):
        raise UserInputError(f"notebook parameter '{name}' = {_described(value)}: expected a "
                             f"folder or a list of folders; e.g. {example}")
    return [str(v) for v in value]


class TrainingRun(NamedTuple):
    config: RunConfig
    seed: int
    run_dir: Path
    force: bool


def training_run(experiment: Any, preset: Any, seed: Any, overrides: Any, data_source: Any,
                 out_dir: Any, force: Any, threads: Any) -> TrainingRun:
    """The training notebook's parameters for one run, checked: `training_runs` with no
    seeds list."""
    [run] = training_runs(experiment, preset, seed, [], overrides, data_source, out_dir, force,
                          threads)
    return run


def seeds_parameter(name: str, value: Any) -> list[int]:
    """A list of distinct whole numbers; YAML/JSON text of one (`'[0, 1, 2]'`) from `-p`."""
    example = f"papermill -p {name} '[0, 1, 2]'"
    if isinstance(value, str):
        value = _yaml_text(name, value, example) if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise UserInputError(f"notebook parameter '{name}' = {_described(value)}: expected a "
                             f"list of seeds; e.g. {example}")
    seeds = [whole_number_parameter(name, v) for v in value]
    if len(set(seeds)) != len(seeds):
        raise UserInputError(f"notebook parameter '{name}' = {value!r}: a seed is listed twice")
    return seeds


def training_runs(experiment: Any, preset: Any, seed: Any, seeds: Any, overrides: Any,
                  data_source: Any, out_dir: Any, force: Any, threads: Any) -> list[TrainingRun]:
    """The training notebook's parameters, checked, as a validated config and the runs to
    train in turn: with no `seeds`, the one run of `seed` in out_dir (""
    runs/notebook/<experiment>/seed<k>); with `seeds` (a suite's batch), one run per seed in
    <out_dir>/seed<k> ("" runs/notebook/<experiment>). A relative out_dir is under the
    repository root, whatever the kernel's working folder. preset "" is
    $MOE_NOTEBOOK_PRESET or cpu; threads > 0 sets torch's intra-op threads.
    """
    experiment = text_parameter("experiment", experiment)
    preset = text_parameter("preset", preset) or os.environ.get(PRESET_ENV) or DEFAULT_PRESET
    seed = whole_number_parameter("seed", seed)
    seeds = seeds_parameter("seeds", seeds)
    config_overrides = mapping_parameter("overrides", overrides)
    data_source = text_parameter("data_source", data_source)
    if data_source:
        config_overrides["data_source"] = data_source
    out_dir = text_parameter("out_dir", out_dir)
    force = flag_parameter("force", force)
    threads = whole_number_parameter("threads", threads)
    cfg = build_config(experiment, preset, config_overrides)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    if not seeds:
        folder = project_root() / (out_dir or f"runs/notebook/{experiment}/seed{seed}")
        return [TrainingRun(cfg, seed, folder, force)]
    folder = project_root() / (out_dir or f"runs/notebook/{experiment}")
    return [TrainingRun(cfg, k, folder / f"seed{k}", force) for k in seeds]


def report_folders(run_dirs: Any, reference_dirs: Any) -> tuple[list[str], list[str]]:
    """The report notebook's folders, checked; run_dirs [] is $MOE_REPORT_RUNS (folders
    separated by os.pathsep) or runs/study."""
    runs = folders_parameter("run_dirs", run_dirs)
    runs = runs or dirs_from_environment(REPORT_RUNS_ENV, DEFAULT_RUN_DIRS)
    return runs, folders_parameter("reference_dirs", reference_dirs)


def dirs_from_environment(variable: str, default: Sequence[str]) -> list[str]:
    """An os.pathsep-separated list from an environment variable, else the default."""
    value = os.environ.get(variable, "")
    return [part for part in value.split(os.pathsep) if part] or list(default)
