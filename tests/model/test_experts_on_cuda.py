"""On a GPU, every expert kernel matches the reference per-expert loop in outputs and gradients,
in each precision (the CPU tests in test_model.py check the same paths on the CPU)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from moe_core.config.run_config import build_config
from moe_core.model.experts import Experts
from moe_core.model.transformer import MoEModel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# the largest relative error, |fast - ref| / |ref| of the loss and of each gradient as a whole,
# per autocast dtype: the kernels round and sum in another order than the loop
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}
DEVICE = "cuda"


def _loss_and_grads(model, tokens, dtype):
    torch.manual_seed(1)  # the same router noise in both models
    with torch.autocast(DEVICE, dtype=dtype, enabled=dtype != torch.float32):
        logits, balance, z = model(tokens)
        ce = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
    (ce + 0.01 * balance + z).backward()
    return ce.detach(), {n: p.grad.float() for n, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("kernel", ["grouped_mm", "padded_bmm"])
def test_cuda_expert_kernel_matches_the_reference_loop(kernel, dtype, monkeypatch):
    monkeypatch.setattr(Experts, "kernel", kernel)
    cfg = dataclasses.replace(build_config("baseline", "cpu"), dropout=0.0)
    torch.manual_seed(0)
    fast = MoEModel(cfg).to(DEVICE)
    ref = MoEModel(cfg).to(DEVICE)
    ref.load_state_dict(fast.state_dict())
    ref.set_reference_dispatch(True)
    tokens = torch.randint(0, cfg.vocab_size, (8, cfg.seq_len), device=DEVICE)
    ce_fast, g_fast = _loss_and_grads(fast, tokens, dtype)
    ce_ref, g_ref = _loss_and_grads(ref, tokens, dtype)
    tolerance = TOLERANCE[dtype]
    assert abs(ce_fast - ce_ref) <= tolerance * ce_ref
    for name in g_fast:
        error = (g_fast[name] - g_ref[name]).norm() / g_ref[name].norm()
        assert error <= tolerance, f"{name}: relative error {error:.2e}"
    assert g_fast["blocks.0.moe.experts.w_out.3"].abs().sum() > 0
