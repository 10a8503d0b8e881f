"""Checkpoints: resumed only for their own config, never running code."""

import json

import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.errors import UserInputError
from moe_core.training.checkpoint import CHECKPOINT_FILE
from moe_core.training.trainer import train


def smoke(experiment="baseline", **overrides):
    return build_config(experiment, "smoke", overrides)


@pytest.mark.slow
def test_checkpoint_from_another_config_is_not_resumed(tmp_path):
    cfg = smoke()
    train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    (tmp_path / "metrics.json").unlink()  # only the checkpoint is left of the first run
    other = train(smoke(lr=0.02), seed=0, out_dir=tmp_path, progress=False)
    assert other["status"] == "completed"
    assert other["evals"][0]["step"] == cfg.eval_every  # trained from the start


class _RunsCodeWhenUnpickled:
    """Stands for a planted object: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo planted > planted.txt",))


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_and_not_resumed(tmp_path,
                                                                            monkeypatch):
    cfg = smoke()
    interrupted = {"status": "interrupted", "config_hash": cfg.config_hash(), "seed": 0}
    (tmp_path / "metrics.json").write_text(json.dumps(interrupted))
    torch.save({"config_hash": cfg.config_hash(), "seed": 0,
                "state": _RunsCodeWhenUnpickled()}, tmp_path / CHECKPOINT_FILE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=r"checkpoint\.pt cannot be loaded as a "
                                             r"checkpoint.*not resumed from") as error:
        train(cfg, seed=0, out_dir=tmp_path, progress=False)
    assert "UnpicklingError" in str(error.value)
    assert not (tmp_path / "planted.txt").exists()  # the callable never ran
    assert json.loads((tmp_path / "metrics.json").read_text()) == interrupted
