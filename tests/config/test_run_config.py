"""The config is assembled from YAML, validated, and hashed stably."""

import shutil

import pytest

from moe_core.config.run_config import (
    PARAMETERS_DIR,
    ConfigError,
    available,
    build_config,
    parse_override,
)

REFERENCE_EXPERIMENTS = ["baseline", "early_stopping", "constant_lr", "lower_lb_weight", "no_lb",
                         "higher_dropout", "linear_decay", "slower_min_lr", "short_run"]


def test_the_nine_reference_experiments_and_three_presets_exist():
    assert set(REFERENCE_EXPERIMENTS) <= set(available("experiments"))
    assert {"paper", "cpu", "smoke"} <= set(available("presets"))


def test_experiments_change_what_their_names_say():
    base = build_config("baseline", "paper")
    assert build_config("short_run", "paper").max_steps == 600
    assert base.max_steps == 1000
    early = build_config("early_stopping", "paper")
    assert (early.early_stopping, early.patience, early.min_delta) == (True, 30, 0.001)
    assert build_config("no_lb", "paper").load_balancing_weight == 0.0
    assert build_config("lower_lb_weight", "paper").load_balancing_weight == 0.001
    assert build_config("higher_dropout", "paper").dropout == 0.2
    assert build_config("slower_min_lr", "paper").min_lr_ratio == 0.3
    assert build_config("constant_lr", "paper").lr_schedule == "constant"
    assert build_config("linear_decay", "paper").lr_schedule == "linear_decay"


def test_short_run_is_sixty_percent_of_the_baseline_at_every_preset():
    for preset in ("paper", "cpu", "smoke"):
        base = build_config("baseline", preset)
        short = build_config("short_run", preset)
        assert short.max_steps < base.max_steps
        assert short.max_steps == pytest.approx(0.6 * base.max_steps, abs=base.grad_accum_steps)
        assert short.max_steps % short.grad_accum_steps == 0


def test_paper_preset_is_the_reference_recipe():
    cfg = build_config("baseline", "paper")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_ff) == (6, 384, 8, 1536)
    assert (cfg.num_experts, cfg.top_k, cfg.vocab_size, cfg.seq_len) == (8, 2, 49152, 512)
    assert (cfg.batch_size, cfg.grad_accum_steps, cfg.eval_every, cfg.lr) == (24, 4, 10, 0.01)
    assert cfg.data_source == "hub" and cfg.tokenizer == "HuggingFaceTB/SmolLM-135M"


def test_overrides_win_over_experiment_and_preset():
    cfg = build_config("higher_dropout", "smoke", {"dropout": 0.05})
    assert cfg.dropout == 0.05


def test_hash_is_stable_and_changes_with_any_setting():
    a = build_config("baseline", "cpu")
    assert a.config_hash() == build_config("baseline", "cpu").config_hash()
    assert a.config_hash() != build_config("baseline", "cpu", {"lr": 0.02}).config_hash()
    assert a.config_hash() != build_config("no_lb", "cpu").config_hash()


def test_keep_weights_is_bookkeeping_outside_the_hash():
    kept = build_config("baseline", "cpu", {"keep_weights": True})
    assert kept.keep_weights is True and kept.to_dict()["keep_weights"] is True  # recorded
    assert kept.config_hash() == build_config("baseline", "cpu").config_hash()


def test_override_text_is_read_as_yaml():
    assert parse_override("dropout=0.2") == ("dropout", 0.2)
    assert parse_override("early_stopping=true") == ("early_stopping", True)
    assert parse_override("lr_schedule=linear_decay") == ("lr_schedule", "linear_decay")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("dropout")


BAD_OVERRIDES = [
    ({"dropuot": 0.2}, ["dropuot", "did you mean 'dropout'"]),
    ({"max_steps": "many"}, ["max_steps", "'many'", "integer"]),
    ({"dropout": "high"}, ["dropout", "number"]),
    ({"early_stopping": "yes"}, ["early_stopping", "true or false"]),
    ({"keep_weights": "no"}, ["keep_weights", "'no'", "true or false"]),
    ({"keep_weight": True}, ["unknown key 'keep_weight'", "did you mean 'keep_weights'"]),
    ({"max_steps": 0}, ["max_steps", "positive"]),
    ({"batch_size": -4}, ["batch_size", "positive"]),
    ({"top_k": 9}, ["top_k", "num_experts"]),
    ({"d_model": 33}, ["d_model", "divisible by n_heads"]),
    ({"warmup_ratio": 1.0}, ["warmup_ratio", "[0, 1)"]),
    ({"dropout": 1.0}, ["dropout", "[0, 1)"]),
    ({"lr_schedule": "exponential"}, ["lr_schedule", "cosine", "linear_decay"]),
    ({"seq_len": 64}, ["seq_len", "max_seq_len"]),
    ({"data_source": "local"}, ["data_source", "data_path"]),
    ({"lr": 0.0}, ["lr", "> 0"]),
]


@pytest.mark.parametrize("overrides, fragments", BAD_OVERRIDES,
                         ids=[next(iter(o)) + "=" + str(next(iter(o.values())))
                              for o, _ in BAD_OVERRIDES])
def test_bad_value_names_key_value_and_what_is_allowed(overrides, fragments):
    with pytest.raises(ConfigError) as err:
        build_config("baseline", "smoke", overrides)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert "overrides" in str(err.value)  # names where the bad value came from


def test_unknown_experiment_and_preset_list_what_exists():
    with pytest.raises(ConfigError, match=r"unknown experiment 'basline'.*did you mean 'baseline'"):
        build_config("basline", "cpu")
    with pytest.raises(ConfigError, match=r"unknown preset 'gpu'.*available: .*paper"):
        build_config("baseline", "gpu")


@pytest.fixture
def params_copy(tmp_path):
    shutil.copytree(PARAMETERS_DIR, tmp_path / "parameters")
    return tmp_path / "parameters"


def test_malformed_yaml_names_the_file_and_line(params_copy):
    bad = params_copy / "experiments" / "broken.yaml"
    bad.write_text("description: a broken one\ndropout: [0.1\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: malformed YAML at line \d+"):
        build_config("broken", "cpu", parameters_dir=params_copy)


def test_unknown_key_in_an_experiment_file_names_that_file(params_copy):
    (params_copy / "experiments" / "typo.yaml").write_text(
        "description: a typo\nload_balance_weight: 0.1\n")
    with pytest.raises(ConfigError) as err:
        build_config("typo", "cpu", parameters_dir=params_copy)
    assert "typo.yaml" in str(err.value) and "load_balancing_weight" in str(err.value)


def test_impossible_value_in_a_preset_names_the_preset_file(params_copy):
    path = params_copy / "presets" / "cpu.yaml"
    path.write_text(path.read_text().replace("top_k: 2", "top_k: 12"))
    with pytest.raises(ConfigError, match=r"cpu\.yaml: key 'top_k' = 12"):
        build_config("baseline", "cpu", parameters_dir=params_copy)


def test_experiment_without_description_is_refused(params_copy):
    (params_copy / "experiments" / "bare.yaml").write_text("dropout: 0.3\n")
    with pytest.raises(ConfigError, match="description"):
        build_config("bare", "cpu", parameters_dir=params_copy)


def test_a_condition_applies_under_the_experiment_and_names_the_arm():
    cfg = build_config("no_lb", "cpu", condition="reference_lr")
    assert (cfg.lr_horizon, cfg.load_balancing_weight) == ("reference", 0.0)
    assert (cfg.name, cfg.condition, cfg.arm) == ("no_lb", "reference_lr", "no_lb@reference_lr")
    assert build_config("no_lb", "cpu").arm == "no_lb"
    # papermill passes the condition among the overrides: the same config
    via_overrides = build_config("no_lb", "cpu", {"condition": "reference_lr"})
    assert via_overrides.config_hash() == cfg.config_hash()
    assert cfg.config_hash() != build_config("no_lb", "cpu").config_hash()


def test_a_condition_and_an_experiment_setting_the_same_key_is_refused(params_copy):
    (params_copy / "conditions" / "no_decay.yaml").write_text(
        "description: no decay\nlr_schedule: constant\n")
    with pytest.raises(ConfigError, match=r"linear_decay\.yaml and .*no_decay\.yaml both set "
                                          r"lr_schedule"):
        build_config("linear_decay", "cpu", parameters_dir=params_copy, condition="no_decay")


def test_an_unknown_condition_lists_the_conditions():
    with pytest.raises(ConfigError, match=r"unknown condition 'reference'.*did you mean "
                                          r"'reference_lr'"):
        build_config("baseline", "cpu", condition="reference")


def test_fresh_data_adds_train_documents_and_keeps_the_val_split_fields():
    base, fresh = build_config("baseline", "cpu"), build_config("fresh_data", "cpu")
    assert (fresh.num_documents, fresh.val_fraction) == (base.num_documents, base.val_fraction)
    assert fresh.train_documents_factor == 20.0
    with pytest.raises(ConfigError, match="train_documents_factor.*must be > 0"):
        build_config("baseline", "cpu", {"train_documents_factor": 0.0})
