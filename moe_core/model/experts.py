"""The experts' MLPs and the kernels that run them: a fused loop on the CPU, grouped_mm on
Hopper/Blackwell in bf16, a padded batched matmul on every other accelerator.

The MoE layer (moe_core.model.transformer.MoE) hands Experts the routed tokens sorted by expert.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from moe_core.config.run_config import RunConfig
from moe_core.model.dropout import Dropout, _keep_mask


def expert_kernel(device: torch.device, dtype: torch.dtype) -> str:
    """The expert implementation for tokens on `device` computed in `dtype` (the autocast dtype,
    else the tensors'): "cpu" (_cpu_experts), "grouped_mm" or "padded_bmm".

    torch's grouped_mm runs its CUTLASS kernel, which reads the group offsets on the GPU, only
    for bf16 on compute capability 9.x and 10.x (Hopper, datacenter Blackwell); elsewhere it
    falls back to a loop that copies the offsets to the host (a sync per call), so every
    other CUDA case (fp16, fp32, Ampere, Ada, consumer Blackwell, ROCm builds, whose
    "capability" numbers mean other chips) takes the padded batched matmul, which never
    reads anything back.
    """
    if device.type == "cpu":
        return "cpu"
    nvidia = device.type == "cuda" and torch.version.hip is None
    if nvidia and dtype == torch.bfloat16 and _cuda_major(device) in (9, 10):
        return "grouped_mm"
    return "padded_bmm"


def _cuda_major(device: torch.device) -> int:
    return torch.cuda.get_device_capability(device)[0]  # cached by torch


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on x run in: the autocast dtype where autocast is on, else x's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class Experts(nn.Module):
    """E independent SiLU MLPs; each expert's two matrices are separate 2-D parameters so
    that Muon orthogonalises every expert on its own."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        d, f, E = cfg.d_model, cfg.d_ff, cfg.num_experts
        self.w_in = nn.ParameterList(nn.Parameter(torch.empty(f, d)) for _ in range(E))
        self.w_out = nn.ParameterList(nn.Parameter(torch.empty(d, f)) for _ in range(E))
        self.dropout = Dropout(cfg.dropout)

    # "auto": expert_kernel's choice for the device and dtype; tests and benchmarks set
    # "grouped_mm" or "padded_bmm" to run that path on any device ("cpu" needs CPU tensors)
    kernel = "auto"

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Fast path: x_sorted (N, d) grouped by expert, counts (E,) -> (N, d), in the compute
        dtype (fp32 from the CPU kernel, which keeps its experts in fp32 under autocast)."""
        dtype = _compute_dtype(x_sorted)
        kernel = expert_kernel(x_sorted.device, dtype) if self.kernel == "auto" else self.kernel
        if kernel == "cpu":
            p = self.dropout.p if self.dropout.training else 0.0
            # under torch.compile the loop stays eager: its group sizes are Python ints, and
            # compiling would specialise on them. Wrapped here (only while tracing), not at
            # import: torch.compiler.disable imports torch._dynamo, 2-4 s at the start of
            # every run that never compiles
            experts = torch.compiler.disable(_cpu_experts) if torch.compiler.is_compiling() \
                else _cpu_experts
            return experts(x_sorted, counts, p, list(self.w_in), list(self.w_out))
        if kernel == "grouped_mm":
            offs = counts.cumsum(0).to(torch.int32)
            h = self.dropout(F.silu(_grouped_linear(x_sorted, self.w_in, offs, dtype)))
            return _grouped_linear(h, self.w_out, offs, dtype)
        if kernel == "padded_bmm":
            return _padded_experts(x_sorted, counts, self.w_in, self.w_out, self.dropout, dtype)
        raise ValueError(f"Experts.kernel = {kernel!r}: use auto, cpu, grouped_mm or padded_bmm")

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """One expert applied to x: (n, d) -> (n, d); the plain path used for reference."""
        return F.linear(self.dropout(F.silu(F.linear(x, self.w_in[e]))), self.w_out[e])


def _grouped_linear(x: torch.Tensor, weights: nn.ParameterList, offs: torch.Tensor,
                    dtype: torch.dtype) -> torch.Tensor:
    """Row group g of x (rows offs[g-1]:offs[g]) times weights[g].T, in one grouped matmul."""
    w = torch.stack(list(weights)).to(dtype)  # (E, out, in); a copy, but tiny next to the matmul
    return F.grouped_mm(x.to(dtype), w.transpose(-2, -1), offs=offs)


def _tile_rows(n_rows: int, num_experts: int) -> int:
    """Rows per tile of the padded path: a power of two near a quarter of an expert's fair
    share, 16 to 512. The path always computes num_experts spare tiles (at most 1/4 more rows
    than routed; at the paper shape 1/6); larger tiles mean fewer copies of the weights."""
    fair_quarter = max(1, n_rows // (4 * num_experts))
    return min(512, max(16, 1 << (fair_quarter.bit_length() - 1)))


def _padded_experts(x_sorted: torch.Tensor, counts: torch.Tensor, w_in: nn.ParameterList,
                    w_out: nn.ParameterList, dropout: nn.Dropout, dtype: torch.dtype
                    ) -> torch.Tensor:
    """Every expert's MLP as two batched matmuls over tiles of rows, each tile one expert's.

    Each expert's rows are padded with zero rows to whole tiles. At most N // m + E tiles can be
    in use (N rows, tiles of m), so every shape depends on N alone: nothing is read back to the
    host, and no row is dropped however unbalanced the routing. Tiles beyond those in use, and
    padding rows, hold zeros whose outputs are never gathered. Each tile gets a copy of its
    expert's weights (gathered in fp32, so the backward sums a tile's weight gradient into its
    expert's in fp32).
    """
    n, d = x_sorted.shape
    E = counts.numel()
    m = _tile_rows(n, E)
    n_tiles = n // m + E  # sum over experts of ceil(count / m) never exceeds this
    device = x_sorted.device
    ends = counts.cumsum(0)
    tiles = (counts + m - 1) // m
    tile_ends = tiles.cumsum(0)
    rows = torch.arange(n, device=device)
    expert_of_row = torch.searchsorted(ends, rows, right=True)
    # row r of expert e goes to row (r - e's first row) of e's first tile
    dest = ((tile_ends - tiles) * m - (ends - counts)).index_select(0, expert_of_row) + rows
    tile_expert = torch.searchsorted(tile_ends, torch.arange(n_tiles, device=device),
                                     right=True).clamp_max(E - 1)
    x_pad = x_sorted.new_zeros(n_tiles * m, d, dtype=dtype).index_copy(0, dest, x_sorted.to(dtype))
    w1 = torch.stack(list(w_in)).index_select(0, tile_expert).to(dtype)  # (tiles, f, d)
    h = dropout(F.silu(torch.bmm(x_pad.view(n_tiles, m, d), w1.transpose(1, 2))))
    w2 = torch.stack(list(w_out)).index_select(0, tile_expert).to(dtype)  # (tiles, d, f)
    y = torch.bmm(h, w2.transpose(1, 2)).view(n_tiles * m, d)
    return y.index_select(0, dest)


# glibc serves allocations under 32 MiB from a heap it reuses; larger ones are fresh mmaps whose
# page faults cost ~0.7 ms/MiB here, more than the elementwise work on them
_BLOCK_BYTES = 16 * 2**20


def _cpu_experts(x_sorted: torch.Tensor, counts: torch.Tensor, p: float, w_in: list, w_out: list
                 ) -> torch.Tensor:
    """The CPU's grouped_mm is itself a loop of matmuls, so loop here, in one autograd node
    that skips the weight copies and fuses the dropout (reading counts costs no sync here).
    Experts go in blocks of consecutive rows whose hidden activations stay under _BLOCK_BYTES
    (an expert larger than that is a block of its own)."""
    max_rows = max(1, _BLOCK_BYTES // (4 * w_in[0].shape[0]))
    blocks, start = [], 0
    for e, n in enumerate(counts.tolist()):
        if not blocks or start + n - blocks[-1][0] > max_rows:
            blocks.append((start, []))
        blocks[-1][1].append((e, start, start + n))
        start += n
    return _CpuExpertMLPs.apply(x_sorted, blocks, p, torch.is_grad_enabled(), *w_in, *w_out)


class _CpuExpertMLPs(torch.autograd.Function):
    """Every expert's `x W_in^T -> SiLU -> dropout -> W_out^T` on its rows of x, on the CPU.

    Each matmul writes straight into its rows of the output (no stacked weight copy, no
    transposed copies), the dropout scale rides on the second matmul's alpha, and the
    backward reuses its buffers in place. Under autocast the experts stay in fp32, as
    grouped_mm did (bf16 matmuls are ~40x slower than fp32 on CPUs without bf16 units).
    `blocks`: [(first row, [(expert, lo, hi), ...]), ...], see _cpu_experts.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, x, blocks, p, save, *weights):
        E = len(weights) // 2
        w_in, w_out = weights[:E], weights[E:]
        y = x.new_empty(x.shape[0], w_out[0].shape[0])
        scale, saved = 1.0, []
        for first, members in blocks:
            a = x.new_empty(members[-1][2] - first, w_in[0].shape[0])
            for e, lo, hi in members:
                torch.mm(x[lo:hi], w_in[e].t(), out=a[lo - first:hi - first])
            h = F.silu(a) if save else F.silu(a, inplace=True)
            keep = None
            if p > 0:
                keep, scale = _keep_mask(h.shape, p)
                h.mul_(keep)
            for e, lo, hi in members:
                torch.addmm(y[lo:hi], h[lo - first:hi - first], w_out[e].t(), beta=0,
                            alpha=scale, out=y[lo:hi])
            saved += [a, h, keep]
        if save:
            ctx.save_for_backward(x, *weights, *saved)
            ctx.blocks, ctx.scale, ctx.num_experts = blocks, scale, E
        return y

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_y):
        x, *rest = ctx.saved_tensors
        E = ctx.num_experts
        w_in, w_out, saved = rest[:E], rest[E:2 * E], rest[2 * E:]
        scale = ctx.scale
        grad_y = grad_y.contiguous()
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_w_in, grad_w_out = [None] * E, [None] * E
        for b, (first, members) in enumerate(ctx.blocks):
            a, h, keep = saved[3 * b:3 * b + 3]
            grad_h = torch.empty_like(a)
            for e, lo, hi in members:
                g, rows = grad_y[lo:hi], slice(lo - first, hi - first)
                torch.addmm(grad_h[rows], g, w_out[e], beta=0, alpha=scale, out=grad_h[rows])
                grad_w_out[e] = torch.addmm(w_out[e], g.t(), h[rows], beta=0, alpha=scale)
            if keep is not None:
                grad_h.mul_(keep)
            grad_a = torch.ops.aten.silu_backward(grad_h, a)  # into grad_h: a copy more
            for e, lo, hi in members:
                g = grad_a[lo - first:hi - first]
                grad_w_in[e] = torch.mm(g.t(), x[lo:hi])
                if grad_x is not None:
                    torch.mm(g, w_in[e], out=grad_x[lo:hi])
        return grad_x, None, None, None, *grad_w_in, *grad_w_out
