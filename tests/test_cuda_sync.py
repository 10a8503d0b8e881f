"""A CUDA training step never makes the host wait for the GPU (no .item(), no data-dependent
shapes, no bincount): checked with torch.cuda.set_sync_debug_mode("error")."""

import pytest
import torch
import torch.nn.functional as F

from moe_core.config import build_config
from moe_core.model import MoEModel
from moe_core.train import _optimizer_update, autocast_dtype, build_optimizers, total_loss

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: host synchronisation only exists between a host and a GPU")


def test_training_step_of_the_smoke_config_does_not_synchronise_with_the_host():
    cfg = build_config("baseline", "smoke", {"device": "cuda"})
    device = torch.device("cuda")
    dtype = autocast_dtype(cfg, device)
    torch.manual_seed(0)
    model = MoEModel(cfg).to(device).train()
    optimizers = build_optimizers(model, cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    windows = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1), device=device)

    def training_step(update: int) -> torch.Tensor:
        """grad_accum micro-steps and one optimizer update, as train.train runs them."""
        for _ in range(cfg.grad_accum_steps):
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                logits, balance, z_loss = model(windows[:, :-1])
                ce = F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())
            loss, _ = total_loss(cfg, ce, balance, z_loss)
            scaler.scale(loss / cfg.grad_accum_steps).backward()
        return _optimizer_update(model, optimizers, scaler, cfg, update)

    # the first step creates optimizer state and library handles, which may copy from the host
    training_step(1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        grad_norm = training_step(2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(grad_norm).item()
    assert model.moe_layers[0].read_stats()["tokens_per_expert"].sum().item() > 0
