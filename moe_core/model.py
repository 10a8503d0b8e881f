"""The reference MoE transformer: pre-norm blocks of RoPE attention and a top-k MoE FFN.

File order is the forward pass: rotary embeddings, attention, router, experts, the MoE
layer that joins them, the block, the model. Shapes: B batch, S sequence, T = B*S tokens,
d d_model, f d_ff, E experts, k top_k.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from moe_core.config import RunConfig


def rope_tables(seq_len: int, head_dim: int, base: float, device=None) -> tuple[torch.Tensor, ...]:
    """cos and sin of the rotary angles, each (seq_len, head_dim // 2)."""
    channel = torch.arange(0, head_dim, 2, device=device, dtype=torch.float32)
    inv_freq = base ** (-channel / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + head_dim/2) of x: (B, heads, S, head_dim), in fp32 (cos and
    sin are fp32 tables), the result rounded once to x's dtype (fp16/bf16 under autocast)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)


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


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = Dropout(cfg.dropout)  # on the attention weights
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, S, d = x.shape
        qkv = self.qkv(x).view(B, S, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], cos, sin).unbind(0)  # q and k in one rotation: half the ops
        v = qkv[2]
        p = self.dropout.p if self.training else 0.0
        if p > 0 and x.device.type == "cpu":
            y = _causal_attention(q, k, v, self.dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, S, d))


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: Dropout
                      ) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim), causal) v with dropout on the weights; q, k, v: (B, heads,
    S, head_dim). What SDPA computes, but on the CPU its dropout path draws the mask with
    bernoulli_ and guards fully masked rows, which a causal mask never has."""
    B, H, S, hd = q.shape
    causal = torch.full((S, S), float("-inf"), device=q.device).triu_(1)
    scores = torch.baddbmm(causal, q.reshape(B * H, S, hd), k.reshape(B * H, S, hd).mT,
                           alpha=hd ** -0.5)
    weights = dropout(scores.float().softmax(-1).to(v.dtype))
    return torch.bmm(weights, v.reshape(B * H, S, hd)).view(B, H, S, hd)


class Router(nn.Module):
    """Scores experts per token and picks the top k; returns (weights, indices, probs, logits).

    The reference adds Gaussian noise to the logits in training, weights the chosen experts
    by a softmax over the chosen logits only, and balances with the full softmax. With
    `balance_method = aux_free`, a per-expert bias (no gradient) shifts the choice only
    (Wang et al. 2024), and is nudged after each optimizer update towards equal load.
    """

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.top_k = cfg.top_k
        self.noise_std = cfg.router_noise_std
        self.gate = nn.Linear(cfg.d_model, cfg.num_experts, bias=False)
        self.register_buffer("selection_bias", torch.zeros(cfg.num_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # routing decisions in fp32 even under autocast, which would run the gate in fp16/bf16
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.float(), self.gate.weight.float())
        if self.training and self.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.noise_std
        _, indices = torch.topk(logits + self.selection_bias, self.top_k, dim=-1)
        weights = torch.softmax(logits.gather(-1, indices), dim=-1)
        probs = torch.softmax(logits, dim=-1)
        return weights, indices, probs, logits


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
            return _cpu_experts(x_sorted, counts, p, list(self.w_in), list(self.w_out))
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


@torch.compiler.disable  # the group sizes are Python ints: compiling would specialise on them
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


class MoE(nn.Module):
    """Router + experts. Tokens are permuted so each expert sees one contiguous slice.

    Routing statistics accumulate in buffers as a by-product of the forward pass (no
    second pass, no host synchronisation); the trainer reads and resets them per eval.
    """

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.num_experts, self.top_k = cfg.num_experts, cfg.top_k
        self.router = Router(cfg)
        self.experts = Experts(cfg)
        self.reference_dispatch = False  # True: the plain per-expert loop (tests, benchmarks)
        E = cfg.num_experts
        for name, shape in [("stat_load", (E,)), ("stat_prob", (E,)), ("stat_coselect", (E, E)),
                            ("stat_sums", (4,))]:  # sums: tokens, entropy, balance, z
            self.register_buffer(name, torch.zeros(shape), persistent=False)
        self.register_buffer("load_since_update", torch.zeros(E), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, S, d) -> (y (B, S, d), balance loss (), router z-loss ()), both unweighted."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, indices, probs, logits = self.router(x)
        flat = indices.flatten()
        # scatter_add, not bincount: CUDA bincount reads the max back to the host
        counts = torch.zeros(self.num_experts, dtype=torch.long, device=x.device)
        counts.scatter_add_(0, flat, torch.ones_like(flat))
        if self.reference_dispatch:
            y = self._dispatch_loop(x, weights, indices)
        else:
            y = self._dispatch_grouped(x, weights, indices, counts)
        # Switch balance loss: E * sum_i f_i P_i with f_i the share of top-k assignments
        load_share = counts.float() / indices.numel()
        mean_prob = probs.mean(0)
        balance = self.num_experts * (load_share * mean_prob).sum()
        z_loss = torch.logsumexp(logits, dim=-1).square().mean()
        self._record(counts, mean_prob, probs, indices, balance, z_loss)
        return y.reshape(shape), balance, z_loss

    def _dispatch_grouped(self, x, weights, indices, counts) -> torch.Tensor:
        flat_expert = indices.flatten()  # (T*k,) slot j belongs to token j // k
        order = torch.argsort(flat_expert, stable=True)
        token_of_slot = order // self.top_k
        # index_select, not x[...]: their backward is index_add (atomics), where indexing's
        # backward is index_put with accumulate, which sorts its indices
        y_sorted = self.experts(x.index_select(0, token_of_slot), counts)
        slot_weight = weights.flatten().index_select(0, order)[:, None]
        y_sorted = y_sorted.to(x.dtype) * slot_weight.to(x.dtype)
        return torch.zeros_like(x).index_add_(0, token_of_slot, y_sorted)

    def _dispatch_loop(self, x, weights, indices) -> torch.Tensor:
        y = torch.zeros_like(x)
        for e in range(self.num_experts):
            token, slot = torch.where(indices == e)
            y[token] += weights[token, slot, None].to(x.dtype) * self.experts.expert(e, x[token])
        return y

    @torch.no_grad()
    def _record(self, counts, mean_prob, probs, indices, balance, z_loss) -> None:
        if not self.training:  # statistics describe the routing that training sees
            return
        n_tokens = probs.shape[0]
        self.stat_load += counts
        self.stat_prob += mean_prob * n_tokens
        # (T, E), 1.0 where chosen: top-k indices are distinct, so scatter equals summed one-hots
        chosen = torch.zeros_like(probs).scatter_(1, indices, 1.0)
        self.stat_coselect += chosen.T @ chosen
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).sum()
        self.stat_sums += torch.stack([probs.new_full((), n_tokens), entropy,
                                       balance * n_tokens, z_loss * n_tokens])
        self.load_since_update += counts

    @torch.no_grad()
    def read_stats(self, reset: bool = True) -> dict[str, torch.Tensor]:
        """Routing statistics since the last reset, averaged per token (tensors, on device)."""
        n = self.stat_sums[0].clamp_min(1)
        stats = {
            "tokens_per_expert": self.stat_load.clone(),
            "mean_router_prob": self.stat_prob / n,
            "coselection": self.stat_coselect / n,
            "router_entropy": self.stat_sums[1] / n,
            "balance_loss": self.stat_sums[2] / n,
            "z_loss": self.stat_sums[3] / n,
        }
        if reset:
            for buf in (self.stat_load, self.stat_prob, self.stat_coselect, self.stat_sums):
                buf.zero_()
        return stats

    @torch.no_grad()
    def update_selection_bias(self, rate: float) -> None:
        """Aux-free balancing: raise the bias of under-loaded experts, lower over-loaded ones."""
        load = self.load_since_update
        self.router.selection_bias += rate * torch.sign(load.mean() - load)
        load.zero_()


class Block(nn.Module):
    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.moe_norm = nn.RMSNorm(cfg.d_model)
        self.moe = MoE(cfg)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x + self.dropout(self.attn(self.attn_norm(x), cos, sin))
        y, balance, z_loss = self.moe(self.moe_norm(x))
        return x + self.dropout(y), balance, z_loss


class MoEModel(nn.Module):
    def __init__(self, cfg: RunConfig, vocab_size: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size or cfg.vocab_size
        self.embed = nn.Embedding(self.vocab_size, cfg.d_model)
        self.embed_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.RMSNorm(cfg.d_model)
        self.final_dropout = Dropout(cfg.dropout)
        self.lm_head = nn.Linear(cfg.d_model, self.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied
        cos, sin = rope_tables(cfg.max_seq_len, cfg.head_dim, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, mean=0.0, std=0.02)

    @property
    def moe_layers(self) -> list[MoE]:
        return [block.moe for block in self.blocks]

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens: (B, S) -> (logits (B, S, vocab), balance loss, z-loss), losses summed over
        layers and unweighted; the trainer applies the configured weights."""
        S = tokens.shape[1]
        if S > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {S} exceeds max_seq_len {self.cfg.max_seq_len}")
        x = self.embed_dropout(self.embed(tokens) * math.sqrt(self.cfg.d_model))
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]
        balance = z_loss = x.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            x, b, z = block(x, cos, sin)
            balance, z_loss = balance + b, z_loss + z
        logits = self.lm_head(self.final_dropout(self.final_norm(x)))
        return logits, balance, z_loss

    def set_reference_dispatch(self, enabled: bool) -> None:
        for moe in self.moe_layers:
            moe.reference_dispatch = enabled

    def parameter_counts(self) -> dict[str, int]:
        """total: every parameter once (the tied head counted once); non_expert: all but the
        expert MLPs; active_per_token: non-expert plus top_k of E experts in each layer."""
        total = sum(p.numel() for p in self.parameters())
        expert = sum(p.numel() for m in self.moe_layers for p in m.experts.parameters())
        per_expert = expert // (self.cfg.n_layers * self.cfg.num_experts)
        active = total - expert + self.cfg.n_layers * self.cfg.top_k * per_expert
        return {"total": total, "non_expert": total - expert, "active_per_token": active}
