"""The paper preset trains in the reference's precision (fp16 autocast and a GradScaler on
CUDA), bf16 is one override away, and the scaler skips an update whose gradients overflowed."""

import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.errors import UserInputError
from moe_core.model.transformer import MoEModel
from moe_core.training.device import autocast_dtype, environment, grad_scaler
from moe_core.training.optimizers import (
    build_optimizers,
)
from moe_core.training.optimizers import (
    optimizer_update as _optimizer_update,
)

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_paper_preset_uses_the_references_fp16_autocast_and_grad_scaler_on_cuda():
    cfg = build_config("baseline", "paper")
    assert cfg.precision == "fp16"
    assert autocast_dtype(cfg, CUDA) == torch.float16
    # a CUDA scaler is disabled where CUDA is absent, so ask for the CPU's: the same rule
    assert grad_scaler(CPU, torch.float16).is_enabled()


def test_bf16_is_one_override_away_and_has_no_scaler():
    cfg = build_config("baseline", "paper", {"precision": "bf16"})
    assert autocast_dtype(cfg, CUDA) == torch.bfloat16
    assert not grad_scaler(CPU, torch.bfloat16).is_enabled()
    assert autocast_dtype(build_config("baseline", "cpu"), CUDA) == torch.bfloat16  # auto


def test_fp16_on_the_cpu_is_a_user_error_that_says_which_override_to_add():
    with pytest.raises(UserInputError, match=r"precision.*fp16.*needs CUDA.*precision=fp32"):
        autocast_dtype(build_config("baseline", "paper"), CPU)
    assert autocast_dtype(build_config("baseline", "paper", {"precision": "fp32"}), CPU) is None


def test_environment_records_the_scaler_and_the_expert_kernel():
    env = environment(CPU, torch.bfloat16)
    assert env["autocast_dtype"] == "bfloat16" and env["grad_scaler"] is False
    assert env["expert_kernel"] == "cpu" and env["cuda_capability"] is None


def _model_with_grads(cfg, scale: float):
    torch.manual_seed(0)
    model = MoEModel(cfg)
    optimizers = build_optimizers(model, cfg, CPU)
    for p in model.parameters():
        p.grad = torch.full_like(p, scale)
    return model, optimizers


def test_grad_scaler_skips_an_update_with_non_finite_gradients_and_halves_its_scale():
    cfg = build_config("baseline", "smoke")
    model, optimizers = _model_with_grads(cfg, 1.0)
    # an fp16 overflow reaches both optimizers' gradients (each skips on its own infs only)
    model.blocks[0].moe.experts.w_in[0].grad[0, 0] = float("inf")
    model.embed.weight.grad[3, 1] = float("inf")
    scaler = grad_scaler(CPU, torch.float16)
    scaler.scale(torch.ones(()))  # the scale tensor exists once a loss was scaled
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _optimizer_update(model, optimizers, scaler, cfg, update=1)
    assert scaler.get_scale() == 2.0**15
    for name, p in model.named_parameters():  # neither Muon nor AdamW stepped
        assert torch.equal(p, before[name]), name


def test_grad_scaler_unscales_finite_gradients_before_both_optimizers_step():
    cfg = build_config("baseline", "smoke")
    model, optimizers = _model_with_grads(cfg, 2.0**16 * 1e-3)  # scaled by the initial scale
    scaler = grad_scaler(CPU, torch.float16)
    scaler.scale(torch.ones(()))  # the scale tensor exists once a loss was scaled
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grad_norm = _optimizer_update(model, optimizers, scaler, cfg, update=5)
    assert scaler.get_scale() == 2.0**16
    n_params = sum(p.numel() for p in model.parameters())
    assert grad_norm.item() == pytest.approx(1e-3 * n_params**0.5, rel=1e-3)  # unscaled
    assert not torch.equal(model.embed.weight, before["embed.weight"])  # AdamW stepped
    w_in = "blocks.0.moe.experts.w_in.0"
    assert not torch.equal(dict(model.named_parameters())[w_in], before[w_in])  # Muon too
