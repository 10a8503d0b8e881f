"""A CUDA training step never makes the host wait for the GPU (no .item(), no data-dependent
shapes, no bincount, no grouped_mm fallback that copies offsets to the host): checked with
torch.cuda.set_sync_debug_mode("error"), for every precision and expert kernel."""

import contextlib

import pytest
import torch

from moe_core.config.run_config import build_config
from moe_core.model.experts import Experts, expert_kernel
from moe_core.model.transformer import MoEModel
from moe_core.training.device import autocast_dtype, grad_scaler
from moe_core.training.objective import cross_entropy, total_loss
from moe_core.training.optimizers import (
    build_optimizers,
)
from moe_core.training.optimizers import (
    optimizer_update as _optimizer_update,
)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: host synchronisation only exists between a host and a GPU")


@contextlib.contextmanager
def host_syncs_are_errors(enabled: bool = True):
    if not enabled:
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(("precision", "kernel"), [
    ("bf16", "auto"), ("bf16", "padded_bmm"), ("fp32", "auto"), ("fp16", "auto")])
def test_training_step_does_not_synchronise_with_the_host(precision, kernel, monkeypatch):
    monkeypatch.setattr(Experts, "kernel", kernel)
    cfg = build_config("baseline", "smoke", {"device": "cuda", "precision": precision})
    device = torch.device("cuda")
    dtype = autocast_dtype(cfg, device)
    torch.manual_seed(0)
    model = MoEModel(cfg).to(device).train()
    optimizers = build_optimizers(model, cfg, device)
    scaler = grad_scaler(device, dtype)
    windows = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1), device=device)

    def micro_steps():
        for _ in range(cfg.grad_accum_steps):
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                logits, balance, z_loss = model(windows[:, :-1])
                ce = cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())
            loss, _ = total_loss(cfg, ce, balance, z_loss)
            scaler.scale(loss / cfg.grad_accum_steps).backward()

    # the first step creates optimizer state and library handles, which may copy from the host
    micro_steps()
    _optimizer_update(model, optimizers, scaler, cfg, 1)
    with host_syncs_are_errors():
        micro_steps()
    # fp16: GradScaler reads whether Muon's gradients were finite (once per update, as the
    # reference's scaler did); fused AdamW checks on the device
    with host_syncs_are_errors(enabled=dtype != torch.float16):
        grad_norm = _optimizer_update(model, optimizers, scaler, cfg, 2)
    assert torch.isfinite(grad_norm).item()
    assert model.moe_layers[0].read_stats()["tokens_per_expert"].sum().item() > 0


def test_auto_kernel_is_grouped_mm_exactly_on_hopper_and_blackwell_in_bf16():
    major = torch.cuda.get_device_capability()[0]
    expected = "grouped_mm" if major in (9, 10) else "padded_bmm"
    assert expert_kernel(torch.device("cuda"), torch.bfloat16) == expected
    assert expert_kernel(torch.device("cuda"), torch.float16) == "padded_bmm"
