"""The optimizers: the reference's hybrid (Muon on hidden matrices, AdamW on the rest),
one update with clipping and the LR schedule, and torch.optim.Muon with its Newton-Schulz
iteration in a chosen precision.

torch's Muon orthogonalises each update in bf16, the right call on a GPU with bf16 tensor
cores. A CPU without bf16 units (AVX2) emulates bf16 matmuls at ~1.2 GFLOP/s against
136-176 GFLOP/s in fp32 (benchmarks/bench_moe.py), which made the optimizer half of a
`cpu`-preset step. `muon_ns_precision: auto` therefore keeps torch's bf16 on CUDA (the
reference's recipe) and iterates in fp32 on the CPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from moe_core.config.run_config import RunConfig
from moe_core.config.schedule import lr_factor

if TYPE_CHECKING:
    from moe_core.model.transformer import MoEModel


def newton_schulz(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float, dtype: torch.dtype) -> torch.Tensor:
    """Muon's quintic Newton-Schulz orthogonalisation of a 2-D update, computed in `dtype`
    (torch's iteration, the same coefficients and normalisation), returned in `dtype`."""
    a, b, c = coefficients
    x = update.to(dtype)
    if x.shape[0] > x.shape[1]:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if update.shape[0] > update.shape[1] else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon whose Newton-Schulz iteration runs in `ns_dtype` (torch: bf16).

    Momentum, Nesterov, the "original" and "match_rms_adamw" LR adjustments, weight decay
    and the optimizer state (one "momentum_buffer" per matrix, so checkpoints load in
    either class) are torch's."""

    def __init__(self, params, *args, ns_dtype: torch.dtype = torch.float32, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, params, grads, buffers)  # torch's checks and state
            lr, momentum = float(group["lr"]), group["momentum"]
            for param, grad, buf in zip(params, grads, buffers, strict=True):
                if grad.ndim != 2:
                    raise ValueError(f"Muon takes 2-D matrices; got a {grad.ndim}-D gradient")
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"],
                                       group["eps"], self.ns_dtype)
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update.to(param.dtype),
                           alpha=-lr * _lr_ratio(group["adjust_lr_fn"], param.shape))
        return loss


def _lr_ratio(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's per-matrix LR adjustment for a (rows, cols) matrix."""
    rows, cols = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def build_optimizers(model: MoEModel, cfg: RunConfig, device: torch.device):
    """The reference hybrid: Muon on 2-D hidden weights, AdamW (0.1 x LR) on embeddings and
    norms; or AdamW on everything. Returns a list of (group name, optimizer, peak LR)."""
    fused = device.type == "cuda"
    if cfg.optimizer == "adamw":
        adamw = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=fused)
        return [("adamw", adamw, cfg.lr)]
    muon_params, adamw_params = [], []
    for name, p in model.named_parameters():
        is_hidden_matrix = p.dim() == 2 and not name.startswith("embed")
        (muon_params if is_hidden_matrix else adamw_params).append(p)
    # Keller Jordan's Muon, as the reference used: Nesterov momentum, no weight decay,
    # the update scaled by sqrt(max(1, rows/cols))
    ns_precision = cfg.muon_ns_precision
    if ns_precision == "auto":
        ns_precision = "bf16" if device.type == "cuda" else "fp32"
    muon_kwargs = dict(lr=cfg.lr, momentum=cfg.muon_momentum, nesterov=True, weight_decay=0.0,
                       adjust_lr_fn="original")
    if ns_precision == "bf16":  # torch's own Muon: its Newton-Schulz iteration is bf16
        muon = torch.optim.Muon(muon_params, **muon_kwargs)
    else:
        muon = Muon(muon_params, ns_dtype=torch.float32, **muon_kwargs)
    adamw_lr = cfg.lr * cfg.adamw_lr_ratio
    adamw = torch.optim.AdamW(adamw_params, lr=adamw_lr, weight_decay=cfg.weight_decay,
                              fused=fused)
    return [("muon", muon, cfg.lr), ("adamw", adamw, adamw_lr)]


def optimizer_update(model, optimizers, scaler, cfg: RunConfig, update: int) -> torch.Tensor:
    """One update at the schedule's LR: unscale, clip the global gradient norm, step every
    optimizer, clear the gradients, nudge aux-free balancing biases; the gradient norm."""
    factor = lr_factor(update, cfg)
    for _, opt, peak in optimizers:
        for group in opt.param_groups:
            group["lr"] = peak * factor
        scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    for _, opt, _ in optimizers:
        scaler.step(opt)
    scaler.update()
    for _, opt, _ in optimizers:
        opt.zero_grad(set_to_none=True)
    if cfg.balance_method == "aux_free":
        for moe in model.moe_layers:
            moe.update_selection_bias(cfg.aux_free_bias_rate)
    return grad_norm.detach()
