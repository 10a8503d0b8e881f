"""The catalog of what can run: experiments, conditions, named suites, seeds.

Reads `parameters/` only (no torch, no Jupyter), so the CLI, the suite and the report
share one reading of it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moe_core.config.run_config import (
    ConfigError,
    arm_name,
    available,
    load_condition,
    load_experiment,
    parse_override,
    read_yaml,
    split_arm,
)
from moe_core.errors import UserInputError
from moe_core.paths import PARAMETERS_DIR

SUITES_FILE = "suites.yaml"


@dataclass(frozen=True)
class ExperimentInfo:
    name: str
    description: str
    changes: dict[str, Any]  # the keys its YAML sets, besides the description


def load_suites(parameters_dir: Path = PARAMETERS_DIR) -> dict[str, list[str]]:
    """The named suites of parameters/suites.yaml as lists of arms (`experiment` or
    `experiment@condition`), each checked to name known experiments and conditions.

    A member is an arm's name, or a mapping {condition: NAME, experiments: [...]} that puts
    each of those experiments under the condition (no condition when the key is absent).
    """
    path = parameters_dir / SUITES_FILE
    suites = read_yaml(path)
    return {str(name): _suite_arms(members, f"{path}: key '{name}'", parameters_dir)
            for name, members in suites.items()}


def _suite_arms(members: Any, where: str, parameters_dir: Path) -> list[str]:
    how = ("expected a non-empty list of experiment names (experiment or experiment@condition) "
           "or of {condition: NAME, experiments: [NAMES]} mappings")
    if not isinstance(members, list) or not members:
        raise ConfigError(f"{where} = {members!r}: {how}")
    arms = []
    for member in members:
        if isinstance(member, str):
            arms.append(member)
        elif isinstance(member, dict) and set(member) <= {"condition", "experiments"} \
                and isinstance(member.get("experiments"), list) \
                and all(isinstance(e, str) for e in member["experiments"]) \
                and isinstance(member.get("condition", ""), str):
            arms += [arm_name(e, member.get("condition", "")) for e in member["experiments"]]
        else:
            raise ConfigError(f"{where} holds {member!r}: {how}")
    for arm in arms:
        check_arm(arm, where, parameters_dir)
    return list(dict.fromkeys(arms))


def check_arm(arm: str, where: str = "", parameters_dir: Path = PARAMETERS_DIR) -> None:
    """Raise ConfigError (with did-you-mean) unless the arm's experiment and condition exist."""
    experiment, condition = split_arm(arm)
    for kind, name in (("experiments", experiment), ("conditions", condition)):
        if kind == "conditions" and not condition:
            continue
        known = available(kind, parameters_dir)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where + ' names ' if where else ''}unknown {kind[:-1]} '{name}'"
                              f"{hint}; available: {', '.join(known) or 'none'}")
    load_experiment(experiment, parameters_dir)  # a malformed file fails here, naming itself
    if condition:
        load_condition(condition, parameters_dir)


def list_experiments(parameters_dir: Path = PARAMETERS_DIR) -> list[ExperimentInfo]:
    """Every experiment under parameters/experiments, in the order of the `all` suite."""
    names = available("experiments", parameters_dir)
    order = load_suites(parameters_dir).get("all", [])
    names.sort(key=lambda n: (order.index(n) if n in order else len(order), n))
    infos = []
    for name in names:
        values = dict(load_experiment(name, parameters_dir))
        description = values.pop("description")
        infos.append(ExperimentInfo(name, description, values))
    return infos


def resolve_experiments(
    experiments: Sequence[str] = (),
    suite: str | None = None,
    parameters_dir: Path = PARAMETERS_DIR,
    condition: str = "",
) -> list[str]:
    """The arms of a named suite, or the given names checked to exist (deduplicated);
    `condition` puts every arm that has none under that condition."""
    if suite is not None:
        suites = load_suites(parameters_dir)
        if suite not in suites:
            close = difflib.get_close_matches(suite, suites, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown suite '{suite}'{hint}; the suites in "
                              f"{parameters_dir / SUITES_FILE} are {', '.join(suites)}")
        experiments = suites[suite]
    if not experiments:
        raise UserInputError("no experiments given: name some with -e NAME, or pick a suite "
                             "with --all, --quick or --suite NAME (see `moe-suite list`)")
    if condition:
        load_condition(condition, parameters_dir)  # an unknown name raises, with did-you-mean
        experiments = [arm if split_arm(arm)[1] else arm_name(arm, condition)
                       for arm in experiments]
    for name in experiments:
        check_arm(name, parameters_dir=parameters_dir)
    return list(dict.fromkeys(experiments))


def parse_seeds(text: str) -> list[int]:
    """`3` means seeds 0, 1, 2; `0,4,7` (any comma) means exactly those seeds."""
    how = "expected a count like 3 (seeds 0,1,2) or a comma list like 0,4,7 (a single seed: 5,)"
    parts = [p.strip() for p in str(text).split(",")]
    try:
        numbers = [int(p) for p in parts if p]
    except ValueError:
        raise UserInputError(f"--seeds '{text}': {how}") from None
    if not numbers or any(n < 0 for n in numbers):
        raise UserInputError(f"--seeds '{text}': {how}; seeds are >= 0")
    if "," in str(text):
        return list(dict.fromkeys(numbers))
    if numbers[0] == 0:
        raise UserInputError(f"--seeds '{text}': a count of 0 runs nothing; {how}")
    return list(range(numbers[0]))


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` pairs into a dict, values read as YAML."""
    return dict(parse_override(p) for p in pairs)


def format_listing(parameters_dir: Path = PARAMETERS_DIR) -> str:
    """The text of `moe-suite list`: experiments with what they change, then the suites."""
    infos = list_experiments(parameters_dir)
    width = max(len(i.name) for i in infos) + 2
    lines = [f"Experiments ({parameters_dir / 'experiments'}):"]
    for info in infos:
        changes = ", ".join(f"{k}={json.dumps(v)}" for k, v in info.changes.items())
        lines.append(f"  {info.name:<{width}}{info.description}")
        lines.append(f"  {'':<{width}}changes: {changes or 'nothing (the baseline)'}")
    conditions = available("conditions", parameters_dir)
    if conditions:
        lines.append(f"\nConditions ({parameters_dir / 'conditions'}); `-e NAME@CONDITION` or "
                     "`--condition CONDITION` runs an experiment under one:")
        width_c = max(len(c) for c in conditions) + 2
        for name in conditions:
            values = dict(load_condition(name, parameters_dir))
            description = values.pop("description")
            values.pop("label", None)
            changes = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
            lines.append(f"  {name:<{width_c}}{description}")
            lines.append(f"  {'':<{width_c}}changes: {changes}")
    suites = load_suites(parameters_dir)
    lines.append(f"\nSuites ({parameters_dir / SUITES_FILE}); --all and --quick are shortcuts "
                 "for the suites of those names:")
    width = max(len(s) for s in suites) + 2
    for name, members in suites.items():
        lines.append(f"  {name:<{width}}({len(members)}) {', '.join(members)}")
    return "\n".join(lines)
