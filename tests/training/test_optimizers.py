"""moe_core.training.optimizers.Muon: torch's Muon with the Newton-Schulz iteration in a
chosen precision."""

import dataclasses

import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.model.transformer import MoEModel
from moe_core.training.optimizers import Muon, build_optimizers, newton_schulz

SHAPES = [(24, 8), (8, 24), (16, 16)]  # tall, wide, square


def matrices(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in SHAPES]


def run(optimizer_cls, params, steps=3, **kwargs):
    opt = optimizer_cls(params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.01,
                        adjust_lr_fn="original", **kwargs)
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return opt


def assert_steps_match_torchs(ns_dtype: torch.dtype, atol: float) -> None:
    """Our Muon with ns_dtype and torch's, three steps on the same matrices and gradients,
    end within atol of each other."""
    ours, theirs = matrices(0), matrices(0)
    run(Muon, ours, ns_dtype=ns_dtype)
    run(torch.optim.Muon, theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


def test_in_bf16_it_takes_exactly_torchs_muon_steps():
    assert_steps_match_torchs(torch.bfloat16, atol=1e-6)


def test_in_fp32_it_iterates_in_fp32_and_stays_near_the_bf16_steps():
    update = torch.randn(24, 8, generator=torch.Generator().manual_seed(1))
    coefficients = (3.4445, -4.7750, 2.0315)
    exact = newton_schulz(update.double(), coefficients, 5, 1e-7, torch.float64)
    fp32 = newton_schulz(update, coefficients, 5, 1e-7, torch.float32)
    bf16 = newton_schulz(update, coefficients, 5, 1e-7, torch.bfloat16)
    assert fp32.dtype == torch.float32 and fp32.shape == update.shape
    assert (fp32.double() - exact).abs().max() < 1e-5
    assert (bf16.double() - exact).abs().max() > 1e-3  # what the fp32 iteration avoids
    assert_steps_match_torchs(torch.float32, atol=5e-3)


def test_its_state_is_torchs_so_checkpoints_load_in_either():
    params = matrices(0)
    theirs = run(torch.optim.Muon, params)
    ours = Muon(matrices(0), lr=0.02)
    ours.load_state_dict(theirs.state_dict())
    assert set(ours.state_dict()["state"][0]) == {"momentum_buffer"}
    torch.testing.assert_close(ours.state_dict()["state"][0]["momentum_buffer"],
                               theirs.state_dict()["state"][0]["momentum_buffer"])


@pytest.mark.parametrize("setting, expected", [("auto", Muon), ("fp32", Muon),
                                               ("bf16", torch.optim.Muon)])
def test_the_config_picks_the_iteration_precision_auto_is_fp32_on_the_cpu(setting, expected):
    cfg = dataclasses.replace(build_config("baseline", "smoke"), muon_ns_precision=setting)
    [(name, muon, _), _] = build_optimizers(MoEModel(cfg), cfg, torch.device("cpu"))
    assert name == "muon" and type(muon) is expected
