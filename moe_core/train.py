"""The trainer: micro-batches with gradient accumulation, the hybrid Muon/AdamW optimizer,
LR schedules over optimizer updates, full-split evals, early stopping, checkpoints and
resume, and an atomically rewritten metrics.json after every eval.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from moe_core.config import RunConfig
from moe_core.errors import UserInputError
from moe_core.live import LiveCurves
from moe_core.model import MoEModel, expert_kernel
from moe_core.optim import Muon
from moe_core.schedule import lr_factor

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_CHECKPOINT_FILE = "best.pt"


# ---------------------------------------------------------------- optimizers


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


# ---------------------------------------------------------------- device and precision


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


# ---------------------------------------------------------------- batches


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Row indices of micro-batch `step` (0-based): each epoch is a fresh permutation drawn
    from (seed, epoch), so any step's batch is known without replaying earlier ones."""
    per_epoch = n // batch_size
    epoch, b = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)[b * batch_size:(b + 1) * batch_size]


# ---------------------------------------------------------------- evaluation


@torch.inference_mode()
def evaluate(model: MoEModel, windows: torch.Tensor, batch_size: int, device: torch.device,
             dtype: torch.dtype | None) -> dict[str, float]:
    """Token-weighted mean CE over every window, accuracy on shifted targets, perplexity,
    the standard error of the loss from per-sequence losses, and those per-sequence losses
    ("per_sequence", a float64 CPU tensor). windows: (n, S+1)."""
    was_training = model.training
    model.eval()
    seq_losses, correct = [], torch.zeros((), device=device)
    for start in range(0, len(windows), batch_size):
        w = windows[start:start + batch_size].to(device, non_blocking=True)
        with _autocast(device, dtype):
            logits, _, _ = model(w[:, :-1])
        ce = F.cross_entropy(logits.float().transpose(1, 2), w[:, 1:], reduction="none")
        seq_losses.append(ce.mean(1))
        correct += (logits.argmax(-1) == w[:, 1:]).sum()
    model.train(was_training)
    per_seq = torch.cat(seq_losses).double().cpu()  # all windows have equal length
    loss = per_seq.mean().item()
    se = (per_seq.std() / math.sqrt(len(per_seq))).item() if len(per_seq) > 1 else float("nan")
    n_tokens = windows.shape[0] * (windows.shape[1] - 1)
    return {"loss": loss, "loss_se": se, "accuracy": correct.item() / n_tokens,
            "perplexity": math.exp(min(loss, 700.0)), "per_sequence": per_seq}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------- files


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write to a temporary sibling, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True))
    os.replace(tmp, path)


def save_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> dict | None:
    path = Path(run_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: not valid JSON ({e}); delete it to rerun the run") from None
    if metrics is not None and not isinstance(metrics, dict):
        raise UserInputError(f"{path}: holds a JSON {type(metrics).__name__}, not the object "
                             "of a run's metrics; delete it to rerun the run")
    return metrics


def is_finished(metrics: dict | None, cfg: RunConfig, seed: int) -> bool:
    """A run with this config and seed ended normally (completed or early-stopped)."""
    return bool(metrics) and metrics.get("status") in ("completed", "early_stopped") \
        and metrics.get("config_hash") == cfg.config_hash() and metrics.get("seed") == seed


# ---------------------------------------------------------------- the run


@dataclass
class _State:
    """Everything that must survive an interruption, beside model and optimizer tensors."""

    step: int = 0
    elapsed_s: float = 0.0
    best_loss: float = float("inf")
    best_step: int = 0
    evals_without_improvement: int = 0
    evals: list = field(default_factory=list)


def train(
    cfg: RunConfig,
    seed: int = 0,
    out_dir: str | Path | None = None,
    data=None,
    resume: bool = True,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Train one run and return its metrics dict (also written to out_dir/metrics.json).

    A finished run with the same config hash and seed in out_dir is returned unchanged
    unless force; an interrupted one resumes from its last checkpoint unless resume=False.
    """
    run_dir = Path(out_dir) if out_dir is not None else None
    if run_dir is not None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise UserInputError(f"output folder {run_dir} cannot be written ({e.strerror}); "
                                 "choose another with --out") from None
        previous = read_metrics(run_dir)
        if not force and is_finished(previous, cfg, seed):
            return previous
        if not force and previous and (previous.get("config_hash"), previous.get("seed")) \
                != (cfg.config_hash(), seed):
            raise UserInputError(
                f"{run_dir} holds a run of another config or seed ({previous.get('status')}, "
                f"config {previous.get('config_hash')}, seed {previous.get('seed')}; this "
                f"one: config {cfg.config_hash()}, seed {seed}); a run is never replaced "
                "silently: choose another folder, or force=True (--force) to replace it")

    device = select_device(cfg)
    dtype = autocast_dtype(cfg, device)
    if data is None:
        from moe_core.data import prepare_data  # deferred: the data module pulls in `datasets`

        data = prepare_data(cfg)
    if data.train.shape[0] < cfg.batch_size:
        raise UserInputError(
            f"the train split has {data.train.shape[0]} sequences of {cfg.seq_len} tokens, "
            f"fewer than batch_size ({cfg.batch_size}); add documents (num_documents) or lower "
            "batch_size or seq_len")

    torch.manual_seed(seed)
    model = MoEModel(cfg, vocab_size=data.vocab_size).to(device)
    optimizers = build_optimizers(model, cfg, device)
    scaler = grad_scaler(device, dtype)
    state = _State()
    ckpt_path = run_dir / CHECKPOINT_FILE if run_dir else None
    if ckpt_path is not None and ckpt_path.exists() and force:
        ckpt_path.unlink()  # --force trains from the start
    elif ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, device)
        if (ckpt["config_hash"], ckpt["seed"]) == (cfg.config_hash(), seed) and resume:
            state = _restore(ckpt, model, optimizers, scaler)
        else:
            if resume:
                print(f"note: {ckpt_path} is from another config or seed; starting this run "
                      "from scratch", file=sys.stderr)
            ckpt_path.unlink(missing_ok=True)

    # the token windows live on the device (the paper's train split is ~10 MB of int64), so a
    # batch is gathered there: no host-to-device copy of tokens in the training step
    train_windows = data.train.to(device)
    val_windows = data.val.to(device)
    # a fixed train subset the size of the val split measures the generalization gap
    subset_gen = torch.Generator().manual_seed(seed)
    n_subset = min(cfg.train_subset_sequences or len(data.val), len(data.train))
    train_subset = train_windows[
        torch.randperm(len(data.train), generator=subset_gen)[:n_subset].to(device)]

    meta = {
        "seed": seed,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
        "environment": environment(device, dtype),
        "data": {"fingerprint": data.fingerprint, "source": data.source, "stats": data.stats,
                 "vocab_size": data.vocab_size},
        "bayes_floor": data.bayes_floor,
        "parameter_counts": model.parameter_counts(),
        "run_dir": str(run_dir) if run_dir else None,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tokens_per_step = cfg.batch_size * cfg.seq_len
    n_train = len(data.train)

    def write(status: str, **extra) -> dict:
        metrics = build_metrics(cfg, meta, state, status, **extra)
        if run_dir is not None:
            write_json_atomic(run_dir / METRICS_FILE, metrics)
        return metrics

    write("running")
    # TensorBoard curves in run_dir/tensorboard, for watching a sweep while it trains
    live = LiveCurves(run_dir, state.step, cfg) if run_dir is not None else None
    model.train()
    # running sums since the last eval, on the device: read only at evals (no host sync)
    ce_sum = torch.zeros((), device=device)
    aux_sum = torch.zeros((), device=device)
    grad_norm = torch.full((), float("nan"), device=device)
    first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
    steps_since_eval = 0
    t_start = time.perf_counter() - state.elapsed_s
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not progress,
               desc=f"{cfg.name} s{seed}", unit="step", dynamic_ncols=True)
    status = "completed"
    try:
        while state.step < cfg.max_steps:
            idx = batch_indices(state.step, n_train, cfg.batch_size, seed)
            w = train_windows[idx.to(device, non_blocking=True)]
            with _autocast(device, dtype):
                logits, balance, z_loss = model(w[:, :-1])
                ce = F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten())
            loss, aux = total_loss(cfg, ce, balance, z_loss)
            if cfg.fault_nan_at_step and state.step + 1 == cfg.fault_nan_at_step:
                loss = loss * float("nan")
            scaler.scale(loss / cfg.grad_accum_steps).backward()
            state.step += 1
            steps_since_eval += 1
            ce_sum += ce.detach()
            aux_sum += aux.detach()
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss.detach()),
                                         state.step, first_bad_step)
            if state.step % cfg.grad_accum_steps == 0:
                grad_norm = _optimizer_update(model, optimizers, scaler, cfg,
                                              state.step // cfg.grad_accum_steps)
            bar.update(1)

            if state.step % cfg.eval_every and state.step < cfg.max_steps:
                continue
            bad = int(first_bad_step)
            if bad >= 0:
                status = "diverged"
                meta["diverged_at_step"] = bad
                break
            state.elapsed_s = time.perf_counter() - t_start
            record = _eval_record(
                model, cfg, val_windows, train_subset, device, dtype, state, optimizers,
                ce_sum / steps_since_eval, aux_sum / steps_since_eval, grad_norm,
                tokens_per_step, n_train)
            state.evals.append(record)
            if live is not None:
                live.add_eval(record)
            if not math.isfinite(record["val_loss"]):
                # finite training losses, then an update that left the weights non-finite
                status = "diverged"
                meta["diverged_at_step"] = state.step
                break
            ce_sum.zero_(), aux_sum.zero_()
            steps_since_eval = 0
            improved = record["val_loss"] < state.best_loss - cfg.min_delta
            if record["val_loss"] < state.best_loss:
                state.best_loss, state.best_step = record["val_loss"], state.step
                if cfg.save_best_checkpoint and run_dir is not None:
                    save_atomic(run_dir / BEST_CHECKPOINT_FILE, {"model": model.state_dict()})
            state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_loss']:.3f}",
                            lr=f"{record['lr'][optimizers[0][0]]:.2e}",
                            tok_s=f"{record['tokens_per_s']:.0f}")
            if cfg.early_stopping and state.evals_without_improvement >= cfg.patience:
                status = "early_stopped"
            if run_dir is not None and (len(state.evals) % cfg.checkpoint_every_evals == 0
                                        or status == "early_stopped"
                                        or state.step >= cfg.max_steps):
                _save_checkpoint(ckpt_path, cfg, seed, model, optimizers, scaler, state)
            write("running")
            if status == "early_stopped":
                break
    except BaseException as e:
        state.elapsed_s = time.perf_counter() - t_start
        # keep everything recorded so far; an interrupt leaves a resumable "interrupted" run
        interrupted = isinstance(e, KeyboardInterrupt)
        write("interrupted" if interrupted else "failed",
              error=None if interrupted else f"{type(e).__name__}: {e}")
        raise
    finally:
        bar.close()
        if live is not None:
            live.close()
    state.elapsed_s = time.perf_counter() - t_start
    if status == "diverged":
        return write(status, error=_divergence_message(cfg, meta["diverged_at_step"]))
    return write(status)


def _divergence_message(cfg: RunConfig, step: int) -> str:
    if cfg.fault_nan_at_step == step:
        return f"the loss became NaN at step {step}, as fault_nan_at_step = {step} asks"
    return (f"the loss became NaN or infinite by step {step}; lower lr (now {cfg.lr}) or raise "
            "warmup_ratio, then run again")


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


def _optimizer_update(model, optimizers, scaler, cfg: RunConfig, update: int) -> torch.Tensor:
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


def _eval_record(model, cfg, val_windows, train_subset, device, dtype, state, optimizers, train_ce,
                 aux, grad_norm, tokens_per_step, n_train) -> dict:
    """The eval's record for metrics.json."""
    from moe_core.diagnostics import max_violation

    routing = []
    for moe in model.moe_layers:
        stats = {k: v.cpu() for k, v in moe.read_stats().items()}
        load = stats["tokens_per_expert"]
        routing.append({
            "tokens_per_expert": load.tolist(),
            "mean_router_prob": stats["mean_router_prob"].tolist(),
            "router_entropy": stats["router_entropy"].item(),
            "balance_loss": stats["balance_loss"].item(),
            "z_loss": stats["z_loss"].item(),
            "max_violation": float(max_violation(load.numpy())),
            "coselection": stats["coselection"].tolist(),
        })
    val = evaluate(model, val_windows, cfg.batch_size, device, dtype)
    sub = evaluate(model, train_subset, cfg.batch_size, device, dtype)
    updates = state.step // cfg.grad_accum_steps
    previous_elapsed = state.evals[-1]["elapsed_s"] if state.evals else 0.0
    previous_step = state.evals[-1]["step"] if state.evals else 0
    window_s = max(state.elapsed_s - previous_elapsed, 1e-9)
    record = {
        "step": state.step,
        "optimizer_update": updates,
        "tokens_seen": state.step * tokens_per_step,
        "epochs_seen": state.step * cfg.batch_size / n_train,
        "elapsed_s": state.elapsed_s,
        "tokens_per_s": (state.step - previous_step) * tokens_per_step / window_s,
        "lr": {name: peak * lr_factor(updates, cfg) if updates else 0.0
               for name, _, peak in optimizers},
        # the LR the scheduler holds for the next update: what the reference logged
        "lr_next": {name: peak * lr_factor(updates + 1, cfg) for name, _, peak in optimizers},
        "train_loss": float(train_ce),
        "aux_loss": float(aux),
        "grad_norm": float(grad_norm),
        "val_loss": val["loss"],
        "val_loss_se": val["loss_se"],
        # every val sequence's mean loss, in the split's order: runs on the same val split
        # (data.stats.val.windows_sha) are compared sequence by sequence, which removes the
        # split's sampling error shared by both sides (moe_core.diagnostics)
        "val_loss_per_sequence": [round(v, 6) for v in val["per_sequence"].tolist()],
        "val_accuracy": val["accuracy"],
        "val_perplexity": val["perplexity"],
        "train_subset_loss": sub["loss"],
        "train_subset_accuracy": sub["accuracy"],
        "routing": routing,
    }
    return record


def build_metrics(cfg: RunConfig, meta: dict, state: _State, status: str, **extra) -> dict:
    """metrics.json: the reference format (experiment_config, final/best metrics, history of
    parallel lists in its units) plus our fields (status, config, hash, evals, ...)."""
    evals = state.evals
    # per-eval co-selection matrices would dominate the file: keep only the last one
    slim = [{**r, "routing": [{k: v for k, v in layer.items() if k != "coselection"}
                              for layer in r["routing"]]} for r in evals]
    last, best = (evals[-1], min(evals, key=lambda r: r["val_loss"])) if evals else (None, None)
    first_group = next(iter(evals[0]["lr_next"])) if evals else None

    def summary(r):
        return None if r is None else {"val_loss": r["val_loss"], "val_accuracy": r["val_accuracy"],
                                       "val_perplexity": r["val_perplexity"],
                                       "val_loss_se": r["val_loss_se"], "step": r["step"],
                                       "train_subset_loss": r["train_subset_loss"]}
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_config": {
            "name": cfg.name, "description": cfg.description, "max_steps": cfg.max_steps,
            "lr_schedule_type": cfg.lr_schedule, "use_early_stopping": cfg.early_stopping,
            "load_balancing_weight": cfg.load_balancing_weight, "dropout": cfg.dropout,
            "batch_size": cfg.batch_size, "num_experts": cfg.num_experts,
            "expert_top_k": cfg.top_k,
        },
        "final_metrics": summary(last),
        "best_metrics": summary(best),
        "total_time_minutes": state.elapsed_s / 60,
        "stopped_early": status == "early_stopped",
        "actual_steps": state.step,
        "history": {
            "steps": [r["step"] for r in evals],
            "val_losses": [r["val_loss"] for r in evals],
            "val_accuracies": [r["val_accuracy"] for r in evals],
            "val_perplexities": [r["val_perplexity"] for r in evals],
            "elapsed_times": [r["elapsed_s"] / 60 for r in evals],
            "learning_rates": [r["lr_next"][first_group] for r in evals],
        },
        "status": status,
        **meta,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")
        if status != "running" else None,
        "evals": slim,
        "final_routing": last["routing"] if last else None,
        **extra,
    }


# ---------------------------------------------------------------- checkpoints


def _save_checkpoint(path, cfg, seed, model, optimizers, scaler, state: _State) -> None:
    save_atomic(path, {
        "config_hash": cfg.config_hash(),
        "seed": seed,
        "model": model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt, _ in optimizers},
        "scaler": scaler.state_dict(),
        # gradients pending mid-accumulation, so an eval between updates resumes exactly
        "grads": [p.grad for p in model.parameters()],
        "aux_free_load": [m.load_since_update for m in model.moe_layers],
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "state": state.__dict__,
    })


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint's contents, unpickled with torch's weights_only loader: tensors and plain
    data only, so a file placed in a (shared) run folder cannot run code when a run resumes.
    Anything else is a UserInputError, and the run is not resumed from it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # UnpicklingError for a foreign object; others for a broken file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(
            f"{path} cannot be loaded as a checkpoint of this project ({type(e).__name__}: "
            f"{first[:200]}); it is not resumed from. If you trust it, it was not written by "
            "moe_core; otherwise delete it (and metrics.json) to train the run from the start"
        ) from None


def _restore(ckpt: dict, model, optimizers, scaler) -> _State:
    model.load_state_dict(ckpt["model"])
    for name, opt, _ in optimizers:
        opt.load_state_dict(ckpt["optimizers"][name])
    scaler.load_state_dict(ckpt["scaler"])
    for p, g in zip(model.parameters(), ckpt["grads"], strict=True):
        p.grad = g
    for m, load in zip(model.moe_layers, ckpt["aux_free_load"], strict=True):
        m.load_since_update.copy_(load)
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt["rng_cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    return _State(**ckpt["state"])
