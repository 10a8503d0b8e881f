"""Run configuration: preset + experiment + overrides, validated and hashed.

A run's config is assembled from YAML in `parameters/`:

    parameters/presets/<preset>.yaml          every field, for one scale (paper, cpu, smoke)
    parameters/conditions/<condition>.yaml    optional: a setting the experiment runs under
                                              (e.g. the reference's LR horizon)
    parameters/experiments/<name>.yaml        description + only what differs from baseline
    overrides                                 a dict from papermill or `--set key=value`

A condition lets one experiment file serve in several settings: `no_lb` under the
reference's LR schedule is `build_config("no_lb", condition="reference_lr")`, named
`no_lb@reference_lr`, without a copy of either file.

Every user mistake raises `ConfigError`, whose message names the file, key and value
and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moe_core.errors import UserInputError
from moe_core.paths import PARAMETERS_DIR


class ConfigError(UserInputError):
    """A configuration the user wrote cannot be used; the message says where and why."""


@dataclass(frozen=True)
class RunConfig:
    # identity
    name: str = "baseline"
    description: str = ""
    preset: str = "cpu"
    condition: str = ""  # a file of parameters/conditions/ applied under the experiment; "" none

    # model
    vocab_size: int = 256  # for synthetic data: the language's size; otherwise set by the tokenizer
    n_layers: int = 6
    d_model: int = 384
    n_heads: int = 8
    d_ff: int = 1536
    num_experts: int = 8
    top_k: int = 2
    max_seq_len: int = 512
    dropout: float = 0.1
    router_noise_std: float = 0.1
    rope_base: float = 10000.0

    # routing balance
    balance_method: str = "aux_loss"  # aux_loss | aux_free
    load_balancing_weight: float = 0.01
    router_z_loss_weight: float = 0.0
    aux_free_bias_rate: float = 0.001

    # data
    data_source: str = "synthetic"  # synthetic | local | hub
    seq_len: int = 512
    num_documents: int = 2000
    val_fraction: float = 0.1
    data_seed: int = 1234
    data_path: str = ""
    text_field: str = "text"
    tokenizer: str = "bpe"  # bpe (trained on the train split) | path to tokenizer.json | hub name
    hub_dataset: str = "HuggingFaceTB/smollm-corpus"
    hub_config: str = "cosmopedia-v2"
    hub_split: str = "train"
    synthetic_topics: int = 4
    synthetic_branching: int = 8
    synthetic_zipf: float = 1.1
    synthetic_doc_tokens: int = 100

    # training
    max_steps: int = 1000  # micro-batches; optimizer updates = max_steps // grad_accum_steps
    batch_size: int = 24
    grad_accum_steps: int = 4
    optimizer: str = "muon_adamw"  # muon_adamw | adamw
    lr: float = 0.01  # peak LR of Muon (or of AdamW when optimizer = adamw)
    adamw_lr_ratio: float = 0.1  # AdamW LR in the hybrid, as a fraction of lr
    weight_decay: float = 0.1
    muon_momentum: float = 0.95
    # Muon's Newton-Schulz precision: auto = bf16 on CUDA (torch's Muon, the reference's
    # recipe), fp32 on the CPU (bf16 matmuls are emulated there, ~100x slower) | bf16 | fp32
    muon_ns_precision: str = "auto"
    grad_clip: float = 1.0
    lr_schedule: str = "cosine"  # cosine | linear_decay | constant | step
    lr_horizon: str = "updates"  # updates | reference (the reference's micro-step horizon)
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    lr_step_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_step_gamma: float = 0.3
    # > 0: the LR follows the schedule laid out for the preset's run length (max_steps /
    # steps_fraction) for this fraction of it, then stays at lr_drop_to x peak to the end of
    # the run, however long: a run identical to its control until the drop
    lr_drop_at: float = 0.0
    lr_drop_to: float = 0.1
    # a run longer than its preset's (steps_fraction > 1) keeps the schedule of the preset's
    # run length and holds its last LR for the extra steps, instead of stretching the
    # schedule: the same run continued (its first max_steps / steps_fraction steps are the
    # shorter run's, bit for bit)
    hold_final_lr: bool = False
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda

    # evaluation and stopping
    eval_every: int = 10
    early_stopping: bool = False
    patience: int = 30  # evals without an improvement of min_delta
    min_delta: float = 0.001
    checkpoint_every_evals: int = 10
    # sequences of the fixed train subset scored at each eval (the train side of the
    # generalization gap); 0: as many as the val split has
    train_subset_sequences: int = 0
    save_best_checkpoint: bool = False
    # a finished run keeps its final model weights as weights.pt (its resume checkpoint is
    # removed either way); bookkeeping: not in the config hash, so runs keep their hashes
    keep_weights: bool = False

    # relative scales an experiment can set, applied to the preset when the config is built,
    # so one experiment file means the same thing at every preset
    steps_fraction: float = 1.0  # max_steps = preset max_steps x this (short_run)
    # the train split gets this many times its documents, taken from beyond num_documents
    # (fresh_data), or below 1 only its first share of them (small_split), while the val split
    # stays the same documents: runs stay paired on one val split
    train_documents_factor: float = 1.0
    # which sample of val text scores the run: 0 the split's own documents; k >= 1 the k-th
    # block of as many documents taken after every train document, so the train documents,
    # tokenizer and batches, and so the training, are the same for every k (a second sample
    # of val text for the same models: moe_core.analysis.val_sample)
    val_sample: int = 0

    # diagnostics only
    fault_nan_at_step: int = 0  # > 0: make the loss NaN at this step (tests the diverged path)

    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def optimizer_updates(self) -> int:
        return self.max_steps // self.grad_accum_steps

    @property
    def parameter_count(self) -> int:
        """Parameters of the model this config builds: the tied embedding, and per layer
        attention, each expert's two matrices, the router and two norms; then the final norm.
        With vocab_size as configured (a tokenizer may set another)."""
        d = self.d_model
        per_layer = (4 * d * d + self.num_experts * 2 * d * self.d_ff + d * self.num_experts
                     + 2 * d)
        return self.vocab_size * d + self.n_layers * per_layer + d

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def arm(self) -> str:
        """The experiment under its condition: `no_lb@reference_lr`, or `no_lb` alone."""
        return arm_name(self.name, self.condition)

    def data_fields(self) -> dict[str, Any]:
        """The fields that decide the prepared data (the data cache key)."""
        keys = ["data_source", "seq_len", "num_documents", "val_fraction", "data_seed",
                "train_documents_factor"]
        if self.val_sample:  # only when set: the split's own val text keeps its cache key
            keys.append("val_sample")
        if self.data_source == "synthetic":
            keys += ["vocab_size", "synthetic_topics", "synthetic_branching", "synthetic_zipf",
                     "synthetic_doc_tokens"]
        elif self.data_source == "local":
            keys += ["data_path", "text_field", "tokenizer", "vocab_size"]
        else:
            keys += ["hub_dataset", "hub_config", "hub_split", "tokenizer"]
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["lr_step_milestones"] = list(self.lr_step_milestones)
        return d

    def config_hash(self) -> str:
        """Stable hash of everything that changes the outcome of a run (not its seed)."""
        d = self.to_dict()
        for bookkeeping in NOT_HASHED:
            d.pop(bookkeeping)
        for key, default in HASHED_WHEN_SET.items():
            if d[key] == default:
                d.pop(key)
        return stable_hash(d)


# keys that describe a run or say what its folder keeps, not what it computes: a run is found
# again (skipped, resumed) whatever they say
NOT_HASHED = ("description", "keep_weights")
# keys added after runs were recorded: hashed only when they differ from their default, so
# every earlier run keeps its hash (and is found again) while a run that sets one is new
HASHED_WHEN_SET = {"lr_drop_at": 0.0, "lr_drop_to": 0.1, "hold_final_lr": False,
                   "val_sample": 0}

CONDITION_SEPARATOR = "@"


def with_added_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded config (a metrics file's) with the keys added since it was written at
    their defaults: what that run ran with."""
    return {**HASHED_WHEN_SET, **config}


def arm_name(experiment: str, condition: str = "") -> str:
    """`experiment@condition`, or the experiment alone without a condition."""
    return f"{experiment}{CONDITION_SEPARATOR}{condition}" if condition else experiment


def split_arm(arm: str) -> tuple[str, str]:
    """`no_lb@reference_lr` -> ("no_lb", "reference_lr"); `no_lb` -> ("no_lb", "")."""
    experiment, _, condition = arm.partition(CONDITION_SEPARATOR)
    return experiment, condition


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig) if f.name != "extra"}

CHOICES = {
    "balance_method": ("aux_loss", "aux_free"),
    "data_source": ("synthetic", "local", "hub"),
    "optimizer": ("muon_adamw", "adamw"),
    "lr_schedule": ("cosine", "linear_decay", "constant", "step"),
    "lr_horizon": ("updates", "reference"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "muon_ns_precision": ("auto", "bf16", "fp32"),
    "device": ("auto", "cpu", "cuda"),
}

POSITIVE_INTS = ("vocab_size", "n_layers", "d_model", "n_heads", "d_ff", "num_experts", "top_k",
                 "max_seq_len", "seq_len", "num_documents", "max_steps", "batch_size",
                 "grad_accum_steps", "eval_every", "patience", "checkpoint_every_evals",
                 "synthetic_topics", "synthetic_branching", "synthetic_doc_tokens")
NON_NEGATIVE_FLOATS = ("router_noise_std", "load_balancing_weight", "router_z_loss_weight",
                       "aux_free_bias_rate", "weight_decay", "grad_clip", "min_delta",
                       "adamw_lr_ratio", "muon_momentum", "steps_fraction")


def _where(source: str, key: str) -> str:
    return f"{source}: key '{key}'"


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check one value's type against the dataclass field; ints are accepted for floats."""
    expected = FIELDS[key].type
    where = _where(source, key)
    if expected == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r}: expected true or false")
    if expected == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return value
    if expected == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: expected a finite number")
        return float(value)
    if expected == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return value
    if expected.startswith("tuple"):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where} = {value!r}: expected a list of numbers")
        return tuple(float(v) for v in value)
    raise AssertionError(f"unhandled field type {expected}")


def _check_keys(values: dict, source: str) -> None:
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{source}: unknown key '{key}'{hint} "
                f"(see RunConfig in moe_core/config/run_config.py for the allowed keys)"
            )


def _validate(cfg: RunConfig, source: str) -> None:
    """Check values that are well-typed but impossible, naming the offending key."""

    def bad(key: str, allowed: str) -> ConfigError:
        return ConfigError(f"{_where(source, key)} = {getattr(cfg, key)!r}: {allowed}")

    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise bad(key, "allowed values are " + ", ".join(allowed))
    for key in POSITIVE_INTS:
        if getattr(cfg, key) <= 0:
            raise bad(key, "must be a positive integer")
    for key in NON_NEGATIVE_FLOATS:
        if getattr(cfg, key) < 0:
            raise bad(key, "must be >= 0")
    if cfg.lr <= 0:
        raise bad("lr", "must be > 0")
    if cfg.top_k > cfg.num_experts:
        raise bad("top_k", f"must be <= num_experts ({cfg.num_experts})")
    if cfg.d_model % cfg.n_heads:
        raise bad("d_model", f"must be divisible by n_heads ({cfg.n_heads})")
    if cfg.head_dim % 2:
        raise bad("d_model", "d_model / n_heads must be even for rotary embeddings")
    if not 0 <= cfg.warmup_ratio < 1:
        raise bad("warmup_ratio", "must be in [0, 1)")
    if not 0 <= cfg.dropout < 1:
        raise bad("dropout", "must be in [0, 1)")
    if not 0 <= cfg.min_lr_ratio <= 1:
        raise bad("min_lr_ratio", "must be in [0, 1]")
    if not 0 < cfg.val_fraction < 1:
        raise bad("val_fraction", "must be in (0, 1)")
    if cfg.train_subset_sequences < 0:
        raise bad("train_subset_sequences", "must be >= 0 (0: as many as the val split)")
    if cfg.train_documents_factor <= 0:
        raise bad("train_documents_factor", "must be > 0 (1 = the train split's own "
                  "documents; 20 = twenty times as many, 0.5 = its first half; the val split "
                  "unchanged)")
    if cfg.val_sample < 0:
        raise bad("val_sample", "must be >= 0 (0: the val split's own documents; k: the k-th "
                  "block of as many documents after the train documents)")
    if not 0 < cfg.lr_step_gamma <= 1:
        raise bad("lr_step_gamma", "must be in (0, 1]")
    if not 0 <= cfg.lr_drop_at < 1:
        raise bad("lr_drop_at", "a fraction of the preset's run in [0, 1) (0: no drop)")
    if not 0 < cfg.lr_drop_to <= 1:
        raise bad("lr_drop_to", "the LR after the drop, a fraction of the peak in (0, 1]")
    if any(not 0 < m < 1 for m in cfg.lr_step_milestones):
        raise bad("lr_step_milestones", "each milestone is a fraction of training in (0, 1)")
    if cfg.seq_len > cfg.max_seq_len:
        raise bad("seq_len", f"must be <= max_seq_len ({cfg.max_seq_len}), the longest "
                  "sequence the model's positions allow")
    if cfg.max_steps < cfg.grad_accum_steps:
        raise bad("max_steps", f"must be >= grad_accum_steps ({cfg.grad_accum_steps}) so that "
                  "at least one optimizer update happens")
    if cfg.max_steps % cfg.grad_accum_steps:
        raise bad("max_steps", f"must be a multiple of grad_accum_steps ({cfg.grad_accum_steps})")
    if cfg.data_source == "local" and not cfg.data_path:
        raise bad("data_source", "'local' needs data_path: a file or folder of .txt, .jsonl "
                  "or .parquet files")


def read_yaml(path: Path) -> dict:
    """Read one YAML mapping, turning every failure into a ConfigError naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def available(kind: str, parameters_dir: Path = PARAMETERS_DIR) -> list[str]:
    """Names of the presets or experiments defined under parameters/."""
    return sorted(p.stem for p in (parameters_dir / kind).glob("*.yaml"))


def _named_file(kind: str, name: str, parameters_dir: Path) -> Path:
    path = parameters_dir / kind / f"{name}.yaml"
    if not path.is_file():
        names = available(kind, parameters_dir)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        singular = kind.rstrip("s")
        raise ConfigError(
            f"unknown {singular} '{name}'{hint} (no file {path}); "
            f"available: {', '.join(names) or 'none'}"
        )
    return path


def load_experiment(name: str, parameters_dir: Path = PARAMETERS_DIR) -> dict:
    """The experiment's YAML as a dict: its description and the keys it changes."""
    return _load_described("experiments", name, parameters_dir)


def load_condition(name: str, parameters_dir: Path = PARAMETERS_DIR) -> dict:
    """The condition's YAML as a dict: its description, an optional short `label` for
    reports, and the keys it sets."""
    values = _load_described("conditions", name, parameters_dir)
    path = parameters_dir / "conditions" / f"{name}.yaml"
    for key in ("name", "condition", "preset"):
        if key in values:
            raise ConfigError(f"{path}: key '{key}' cannot be set by a condition")
    return values


METADATA_KEYS = ("description", "label")  # describe an experiment or condition, set nothing


def _load_described(kind: str, name: str, parameters_dir: Path) -> dict:
    path = _named_file(kind, name, parameters_dir)
    values = read_yaml(path)
    _check_keys({k: v for k, v in values.items() if k != "label"}, str(path))
    if not isinstance(values.get("label", ""), str):
        raise ConfigError(f"{path}: key 'label' = {values['label']!r}: expected text")
    if not isinstance(values.get("description", ""), str) or not values.get("description"):
        raise ConfigError(f"{path}: key 'description' is missing; give a one-line description")
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from a command line into (key, typed value), the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value, for example dropout=0.2")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def build_config(
    experiment: str = "baseline",
    preset: str = "cpu",
    overrides: dict | None = None,
    parameters_dir: Path = PARAMETERS_DIR,
    condition: str = "",
) -> RunConfig:
    """Assemble and validate one run's config: preset ⊕ condition ⊕ experiment ⊕ overrides.

    The condition may also come as overrides["condition"] (how papermill passes it). A key
    set by both the condition and the experiment is an error: neither may silently win.
    """
    overrides = dict(overrides or {})
    if "condition" in overrides:
        given = _coerce("condition", overrides.pop("condition"), "overrides")
        if condition and given and given != condition:
            raise ConfigError(f"overrides: key 'condition' = {given!r} contradicts the "
                              f"condition {condition!r} given beside it; give one")
        condition = condition or given
    preset_path = _named_file("presets", preset, parameters_dir)
    experiment_path = _named_file("experiments", experiment, parameters_dir)
    layers = [(str(preset_path), read_yaml(preset_path))]
    description = load_experiment(experiment, parameters_dir)
    if condition:
        condition_path = _named_file("conditions", condition, parameters_dir)
        values = load_condition(condition, parameters_dir)
        clash = sorted((set(values) & set(description)) - set(METADATA_KEYS))
        if clash:
            raise ConfigError(
                f"{experiment_path} and {condition_path} both set {', '.join(clash)}: the "
                f"experiment {experiment!r} cannot run under the condition {condition!r}")
        layers.append((str(condition_path), {k: v for k, v in values.items()
                                             if k not in METADATA_KEYS}))
    layers += [(str(experiment_path), {k: v for k, v in description.items() if k != "label"}),
               ("overrides", overrides)]
    merged: dict[str, Any] = {}
    source_of: dict[str, str] = {}
    for source, values in layers:
        _check_keys(values, source)
        for key, value in values.items():
            merged[key] = _coerce(key, value, source)
            source_of[key] = source
    merged["name"] = experiment
    merged["preset"] = preset
    merged["condition"] = condition
    cfg = RunConfig(**merged)
    # validate before scaling, so a bad max_steps is reported as written
    _validate_naming_source(cfg, source_of)
    cfg = _apply_scales(cfg, source_of)
    _validate_naming_source(cfg, source_of)
    return cfg


def _validate_naming_source(cfg: RunConfig, source_of: dict[str, str]) -> None:
    """Validate, naming the file (or overrides) that set the offending key."""
    try:
        _validate(cfg, "merged config")
    except ConfigError as e:
        key = str(e).split("key '", 1)[1].split("'", 1)[0]
        source = source_of.get(key, "defaults")
        raise ConfigError(str(e).replace("merged config", source, 1)) from None


def _apply_scales(cfg: RunConfig, source_of: dict[str, str]) -> RunConfig:
    if cfg.steps_fraction <= 0:
        raise ConfigError(f"{_where(source_of.get('steps_fraction', 'defaults'), 'steps_fraction')}"
                          f" = {cfg.steps_fraction!r}: must be > 0")
    accum = cfg.grad_accum_steps
    max_steps = max(accum, round(cfg.max_steps * cfg.steps_fraction / accum) * accum)
    return dataclasses.replace(cfg, max_steps=max_steps)


def config_from_dict(values: dict, source: str = "metrics.json") -> RunConfig:
    """Rebuild a RunConfig recorded in a metrics file (for resume and reports)."""
    values = {k: v for k, v in values.items() if k in FIELDS}
    typed = {k: _coerce(k, v, source) for k, v in values.items()}
    cfg = RunConfig(**typed)
    _validate(cfg, source)
    return cfg
