"""Where a run computes and in what precision: the device, the autocast dtype, the
GradScaler that fp16 needs, and the environment a run records."""

from __future__ import annotations

import contextlib
import platform
import sys
from typing import Any

import torch

from moe_core.config.run_config import RunConfig
from moe_core.errors import UserInputError
from moe_core.model.experts import expert_kernel


def select_device(cfg: RunConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("config key 'device' = 'cuda' but no CUDA device is available; "
                             "use device: auto or cpu")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, None for plain fp32. `auto`: bf16 on CUDA, fp32 on the CPU; fp16
    (the paper preset: the reference's fp16 autocast) also gets a GradScaler (grad_scaler)."""
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserInputError("config key 'precision' = 'fp16' (the paper preset's, as the "
                             "reference trained) needs CUDA; on the CPU add --set precision=fp32 "
                             "(or bf16)")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler that is on for fp16 autocast only (bf16 has fp32's exponent range), with
    torch's defaults (initial scale 2**16, halved on inf/NaN, doubled every 2,000 clean steps)
    as the reference used. It skips an update whose gradients are not finite; to know, it reads
    one flag per optimizer that lacks a fused kernel (Muon) back to the host, once per update."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def environment(device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda
        else platform.processor() or platform.machine(),
        "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(device)))
        if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "autocast_dtype": str(dtype).replace("torch.", "") if dtype else "float32",
        "grad_scaler": dtype == torch.float16,
        "expert_kernel": expert_kernel(device, dtype or torch.float32),
    }


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
