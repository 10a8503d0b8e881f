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

from moe_core.config.run_config import RunConfig
from moe_core.model.dropout import Dropout
from moe_core.model.experts import Experts


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
