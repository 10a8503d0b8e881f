"""Dropout on the CPU from 16 random bits per element, 4x fewer draws than bernoulli_."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def _keep_mask(shape: tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """Dropout's keep mask (fp32 1.0 with probability 1 - p, else 0.0) and the scale 1 / (1 - p).

    bernoulli_ draws a double per element; here each element reads 16 bits of a 64-bit random
    word, 4x fewer draws (the CPU generator is serial). p is rounded to a multiple of 2**-16.
    The mask is fp32 because multiplying by it is ~8x faster than masked_fill_ with a bool one.
    """
    n_drop = min(max(round(p * 65536), 1), 65535)
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    # convert, then compare in place: comparing int16 into an fp32 output is ~3x slower
    keep = words.view(torch.int16)[:numel].view(shape).float().ge_(n_drop - 32768)
    return keep, 65536 / (65536 - n_drop)


class Dropout(nn.Dropout):
    """nn.Dropout whose mask, on the CPU, is _keep_mask's: forward + backward ~2.3x faster than
    torch's, which draws a double per element with bernoulli_ (measured at the cpu preset's
    (16, 64, 64) activations). Other devices, and torch.compile (which cannot trace random_),
    keep torch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.p == 0 or x.device.type != "cpu"
                or torch.compiler.is_compiling()):
            return super().forward(x)
        keep, scale = _keep_mask(x.shape, self.p)
        if x.dtype == torch.float32:
            return x * keep.mul_(scale)  # one saved mask, one multiply each way
        return x * keep.to(x.dtype) * scale
