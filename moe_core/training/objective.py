"""What the model is trained on and judged by: the cross-entropy (without tensors the size
of the logits on the CPU), the auxiliary routing terms, and evaluation over a whole split
(token-weighted loss, each sequence's loss, accuracy on shifted targets)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from moe_core.config.run_config import RunConfig
from moe_core.model.transformer import MoEModel
from moe_core.training.device import autocast

# an eval forward takes at least batch_size windows, else about this many tokens: at the cpu
# preset 64 windows of 64 tokens evaluate ~12% faster than 16 (fewer, larger ops; measured)
EVAL_BATCH_TOKENS = 4096


@torch.inference_mode()
def evaluate(model: MoEModel, windows: torch.Tensor, batch_size: int, device: torch.device,
             dtype: torch.dtype | None) -> dict[str, float]:
    """Token-weighted mean CE over every window, accuracy on shifted targets, perplexity,
    the standard error of the loss from per-sequence losses, and those per-sequence losses
    ("per_sequence", a float64 CPU tensor). windows: (n, S+1)."""
    was_training = model.training
    model.eval()
    seq_losses, correct = [], torch.zeros((), device=device)
    rows = max(batch_size, EVAL_BATCH_TOKENS // (windows.shape[1] - 1))
    for start in range(0, len(windows), rows):
        w = windows[start:start + rows].to(device, non_blocking=True)
        with autocast(device, dtype):
            logits, _, _ = model(w[:, :-1])
        logits, targets = logits.float(), w[:, 1:]
        # over the last dim: CE over a transposed (B, vocab, S) view is ~2.4x slower on the CPU
        ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        seq_losses.append(ce.view(targets.shape).mean(1))
        # correct where the target's logit is the largest: argmax is ~10x slower than amax on
        # the CPU, and differs only at exact ties (counted correct here)
        target_logit = logits.gather(-1, targets[..., None]).squeeze(-1)
        correct += (target_logit >= logits.amax(-1)).sum()
    model.train(was_training)
    per_seq = torch.cat(seq_losses).double().cpu()  # all windows have equal length
    loss = per_seq.mean().item()
    se = (per_seq.std() / math.sqrt(len(per_seq))).item() if len(per_seq) > 1 else float("nan")
    n_tokens = windows.shape[0] * (windows.shape[1] - 1)
    return {"loss": loss, "loss_se": se, "accuracy": correct.item() / n_tokens,
            "perplexity": math.exp(min(loss, 700.0)), "per_sequence": per_seq}


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy's mean over logits (N, vocab) and targets (N,), in fp32 logits, without
    allocating tensors the size of the logits; backward overwrites `logits` with their
    gradient (see _CrossEntropy)."""
    return _CrossEntropy.apply(logits, targets)


class _CrossEntropy(torch.autograd.Function):
    """The log-sum-exp goes in row blocks of ~8 MB on the CPU (logsumexp makes a temporary the
    size of its input) and the backward turns the saved logits into their gradient in place
    (softmax minus one-hot). torch's path allocates three more tensors the size of the logits
    (log-softmax, its incoming gradient, its gradient), 2.4 GB each at the paper preset, fresh
    pages every time on the CPU; this is 3.3x less time beside the LM head there (measured at
    2,048 tokens x 49,152). On a GPU one block: its allocator reuses memory, and each block
    would be a kernel launch."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = max(1, 2**21 // logits.shape[-1]) if logits.device.type == "cpu" else len(logits)
        lse = torch.cat([torch.logsumexp(block, dim=-1) for block in logits.split(rows)])
        ctx.save_for_backward(logits, targets, lse)
        return (lse - logits.gather(-1, targets[:, None]).squeeze(-1)).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, targets, lse = ctx.saved_tensors
        softmax = logits.sub_(lse[:, None]).exp_()  # nothing else reads the logits now
        softmax.scatter_add_(-1, targets[:, None], softmax.new_full((len(targets), 1), -1.0))
        return softmax.mul_(grad / len(targets)), None


def total_loss(cfg: RunConfig, ce: torch.Tensor, balance: torch.Tensor,
               z_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE + weighted auxiliary terms, the auxiliary part). A zero weight leaves its term out
    of the graph entirely, so it contributes exactly nothing to any gradient."""
    aux = torch.zeros_like(ce)
    if cfg.load_balancing_weight and cfg.balance_method == "aux_loss":
        aux = aux + cfg.load_balancing_weight * balance
    if cfg.router_z_loss_weight:
        aux = aux + cfg.router_z_loss_weight * z_loss
    return ce + aux, aux
