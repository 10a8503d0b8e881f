"""The trainer: micro-batches with gradient accumulation, the hybrid Muon/AdamW optimizer,
LR schedules over optimizer updates, full-split evals, early stopping, checkpoints and
resume, and an atomically rewritten metrics.json after every eval.

`train` is the whole run; `_setup` builds a `_Run` (model, optimizers, data on the device,
state), `_train_steps` loops over micro-steps, `_micro_step` trains one micro-batch,
`_after_eval` evaluates and records (the record's format: moe_core.record.metrics_json).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from moe_core.config.run_config import RunConfig
from moe_core.config.schedule import lr_factor
from moe_core.errors import UserInputError
from moe_core.model.transformer import MoEModel
from moe_core.record.metrics_json import (
    COMPLETED,
    DIVERGED,
    EARLY_STOPPED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    EvalRecord,
    RunFacts,
    RunRecord,
    build_metrics,
    check_writable,
    eval_record,
    is_finished_run,
    is_finished_status,
    layer_routing,
    other_run,
    read_metrics,
    run_facts,
    write_metrics,
)
from moe_core.training.checkpoint import (
    BEST_CHECKPOINT_FILE,
    CHECKPOINT_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    restore,
    save_atomic,
    save_checkpoint,
    save_weights,
)
from moe_core.training.device import (
    autocast,
    autocast_dtype,
    environment,
    grad_scaler,
    select_device,
)
from moe_core.training.objective import cross_entropy, evaluate, total_loss
from moe_core.training.optimizers import build_optimizers, optimizer_update
from moe_core.training.tensorboard_log import LiveCurves

# ---------------------------------------------------------------- batches


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Row indices of micro-batch `step` (0-based): each epoch is a fresh permutation drawn
    from (seed, epoch), so any step's batch is known without replaying earlier ones."""
    per_epoch = n // batch_size
    epoch, b = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)[b * batch_size:(b + 1) * batch_size]


# ---------------------------------------------------------------- the run


@dataclass
class RunState:
    """What a run has done: kept in every checkpoint beside the tensors."""

    step: int = 0
    elapsed_s: float = 0.0
    best_loss: float = float("inf")
    best_step: int = 0
    evals_without_improvement: int = 0
    evals: list[EvalRecord] = field(default_factory=list)


@dataclass
class _SinceEval:
    """Sums since the last eval, on the device: read only at evals (no host sync per step)."""

    ce: torch.Tensor
    aux: torch.Tensor
    grad_norm: torch.Tensor
    first_bad_step: torch.Tensor  # -1 while every loss was finite
    steps: int = 0

    @classmethod
    def on(cls, device: torch.device, saved: dict | None = None) -> _SinceEval:
        if saved is not None:
            return cls(**{k: v.to(device) if torch.is_tensor(v) else v
                          for k, v in saved.items()})
        return cls(torch.zeros((), device=device), torch.zeros((), device=device),
                   torch.full((), float("nan"), device=device),
                   torch.full((), -1, dtype=torch.long, device=device))


@dataclass
class _Run:
    """One run being trained: its config, model, optimizers, data on the device and state."""

    cfg: RunConfig
    seed: int
    run_dir: Path | None
    device: torch.device
    dtype: torch.dtype | None
    model: MoEModel
    optimizers: list
    scaler: torch.amp.GradScaler
    train_windows: torch.Tensor
    val_windows: torch.Tensor
    train_subset: torch.Tensor
    meta: RunFacts
    state: RunState
    since: _SinceEval

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.seq_len

    def write(self, status: str, **extra: Any) -> RunRecord:
        s = self.state
        metrics = build_metrics(self.cfg.to_dict(), self.meta, s.evals, s.elapsed_s, s.step,
                                status, **extra)
        if self.run_dir is not None:
            write_metrics(self.run_dir, metrics)
        return metrics

    def checkpoint(self) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.run_dir / CHECKPOINT_FILE, self.cfg.config_hash(), self.seed,
                            self.model, self.optimizers, self.scaler, asdict(self.state),
                            asdict(self.since))

    def finish(self, status: str) -> RunRecord:
        """Record a run that ended normally, then keep only what it needs: its final weights
        when keep_weights, not its checkpoint, which only a run that can still resume needs.
        The weights are written before metrics.json says finished, and the checkpoint removed
        after, so a crash in between leaves a run that resumes (at its end) or is done."""
        if self.run_dir is not None and self.cfg.keep_weights:
            save_weights(self.run_dir / WEIGHTS_FILE, self.model)
        metrics = self.write(status)
        if self.run_dir is not None:
            (self.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        return metrics


class _StopRequest:
    """Ctrl-C (SIGINT) while training asks the loop to stop at the next step boundary, where
    a checkpoint is consistent, so resuming loses no work; a second one interrupts at once.
    Only in the main thread (where Python delivers signals); elsewhere nothing changes."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    cfg: RunConfig,
    seed: int = 0,
    out_dir: str | Path | None = None,
    data=None,
    resume: bool = True,
    force: bool = False,
    progress: bool = True,
) -> RunRecord:
    """Train one run and return its metrics dict (also written to out_dir/metrics.json).

    A finished run with the same config hash and seed in out_dir is returned unchanged
    unless force; an interrupted one resumes from its last checkpoint unless resume=False;
    a folder holding another config's or seed's run is refused unless force. Ctrl-C writes
    a checkpoint at the next step, records "interrupted" and raises KeyboardInterrupt.
    A finished run's folder keeps no checkpoint; its final weights (weights.pt) only when
    cfg.keep_weights.
    """
    run_dir = Path(out_dir) if out_dir is not None else None
    finished = _finished_here(run_dir, cfg, seed, force) if run_dir is not None else None
    if finished is not None:
        if cfg.keep_weights and not (run_dir / WEIGHTS_FILE).exists():
            print(f"note: {run_dir} holds this run, finished without keep_weights: its weights "
                  "were not kept; force=True (--force) retrains it to keep them",
                  file=sys.stderr)
        return finished
    run = _setup(cfg, seed, run_dir, data, resume, force)
    run.write(RUNNING)
    # TensorBoard curves in run_dir/tensorboard, for watching a sweep while it trains
    live = LiveCurves(run_dir, run.state.step, cfg) if run_dir is not None else None
    run.model.train()
    t_start = time.perf_counter() - run.state.elapsed_s
    bar = tqdm(total=cfg.max_steps, initial=run.state.step, disable=not progress,
               desc=f"{cfg.arm} s{seed}", unit="step", dynamic_ncols=True)
    try:
        status = _train_steps(run, live, bar, t_start)
    except BaseException as e:
        run.state.elapsed_s = time.perf_counter() - t_start
        # keep everything recorded so far; an interrupt leaves a resumable "interrupted" run
        interrupted = isinstance(e, KeyboardInterrupt)
        run.write(INTERRUPTED if interrupted else FAILED,
                  error=None if interrupted else f"{type(e).__name__}: {e}")
        raise
    finally:
        bar.close()
        if live is not None:
            live.close()
    run.state.elapsed_s = time.perf_counter() - t_start
    if status == DIVERGED:
        return run.write(status, error=_divergence_message(cfg, run.meta["diverged_at_step"]))
    assert is_finished_status(status), status
    return run.finish(status)


def _train_steps(run: _Run, live: LiveCurves | None, bar: Any, t_start: float) -> str:
    """Micro-steps, with an eval every eval_every steps and at the last, until max_steps or
    an eval ends the run; the status it ends with. Ctrl-C checkpoints at the next step
    boundary and raises KeyboardInterrupt."""
    cfg, state = run.cfg, run.state
    with _StopRequest() as stop:
        while state.step < cfg.max_steps:
            if stop.requested:
                state.elapsed_s = time.perf_counter() - t_start
                run.checkpoint()  # between micro-steps: everything is consistent
                raise KeyboardInterrupt
            _micro_step(run)
            bar.update(1)
            if state.step % cfg.eval_every and state.step < cfg.max_steps:
                continue
            state.elapsed_s = time.perf_counter() - t_start
            status = _after_eval(run, live, bar)
            if status != RUNNING:
                return status
    return COMPLETED


def _finished_here(run_dir: Path, cfg: RunConfig, seed: int, force: bool) -> RunRecord | None:
    """The metrics of this run when the folder holds it finished (and not force); a
    UserInputError when it holds another config's or seed's run (and not force)."""
    check_writable(run_dir)
    previous = read_metrics(run_dir)
    if force:
        return None
    if is_finished_run(previous, cfg.config_hash(), seed):
        return previous
    other = other_run(previous, cfg.config_hash(), seed)
    if other:
        raise UserInputError(
            f"{run_dir} holds a run of another config or seed ({other}; this one: config "
            f"{cfg.config_hash()}, seed {seed}); a run is never replaced silently: choose "
            "another folder, or force=True (--force) to replace it")
    return None


def _setup(cfg: RunConfig, seed: int, run_dir: Path | None, data: Any, resume: bool,
           force: bool) -> _Run:
    """The model, optimizers and data of a run on its device, resumed from the folder's
    checkpoint when it holds one of this run."""
    device = select_device(cfg)
    dtype = autocast_dtype(cfg, device)
    if data is None:
        from moe_core.data.splits import prepare_data

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
    state, since = RunState(), None
    ckpt_path = run_dir / CHECKPOINT_FILE if run_dir else None
    if ckpt_path is not None and force:
        # --force trains from the start, and no weights of the run it replaces stay behind
        ckpt_path.unlink(missing_ok=True)
        (run_dir / WEIGHTS_FILE).unlink(missing_ok=True)
    elif ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, device)
        if (ckpt["config_hash"], ckpt["seed"]) == (cfg.config_hash(), seed) and resume:
            saved, since = restore(ckpt, model, optimizers, scaler)
            state = RunState(**saved)
        else:
            if resume:
                print(f"note: {ckpt_path} is from another config or seed; starting this run "
                      "from scratch", file=sys.stderr)
            ckpt_path.unlink(missing_ok=True)
    # the token windows live on the device (the paper's train split is ~10 MB of int64), so a
    # batch is gathered there: no host-to-device copy of tokens in the training step
    train_windows = data.train.to(device)
    # a fixed train subset (the val split's size unless set) measures the generalization gap
    subset_gen = torch.Generator().manual_seed(seed)
    n_subset = min(cfg.train_subset_sequences or len(data.val), len(data.train))
    train_subset = train_windows[
        torch.randperm(len(data.train), generator=subset_gen)[:n_subset].to(device)]
    meta = run_facts(
        seed=seed,
        config=cfg.to_dict(),
        config_hash=cfg.config_hash(),
        environment=environment(device, dtype),
        data={"fingerprint": data.fingerprint, "source": data.source, "stats": data.stats,
              "vocab_size": data.vocab_size},
        bayes_floor=data.bayes_floor,
        parameter_counts=model.parameter_counts(),
        run_dir=str(run_dir) if run_dir else None,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return _Run(cfg, seed, run_dir, device, dtype, model, optimizers, scaler, train_windows,
                data.val.to(device), train_subset, meta, state, _SinceEval.on(device, since))


def _micro_step(run: _Run) -> None:
    """Forward and backward on one micro-batch; an optimizer update every grad_accum_steps."""
    cfg, state, since = run.cfg, run.state, run.since
    idx = batch_indices(state.step, len(run.train_windows), cfg.batch_size, run.seed)
    w = run.train_windows[idx.to(run.device, non_blocking=True)]
    with autocast(run.device, run.dtype):
        logits, balance, z_loss = run.model(w[:, :-1])
        ce = cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten())
    loss, aux = total_loss(cfg, ce, balance, z_loss)
    if cfg.fault_nan_at_step and state.step + 1 == cfg.fault_nan_at_step:
        loss = loss * float("nan")
    run.scaler.scale(loss / cfg.grad_accum_steps).backward()
    state.step += 1
    since.steps += 1
    since.ce += ce.detach()
    since.aux += aux.detach()
    since.first_bad_step = torch.where(
        (since.first_bad_step < 0) & ~torch.isfinite(loss.detach()), state.step,
        since.first_bad_step)
    if state.step % cfg.grad_accum_steps == 0:
        since.grad_norm = optimizer_update(run.model, run.optimizers, run.scaler, cfg,
                                            state.step // cfg.grad_accum_steps)


def _after_eval(run: _Run, live: LiveCurves | None, bar: Any) -> str:
    """Evaluate, record, checkpoint and write metrics; the status the run continues with
    (RUNNING) or ends with (DIVERGED, EARLY_STOPPED)."""
    cfg, state, since = run.cfg, run.state, run.since
    bad = int(since.first_bad_step)
    if bad >= 0:
        run.meta["diverged_at_step"] = bad
        return DIVERGED
    record = _eval_record(run)
    state.evals.append(record)
    if live is not None:
        live.add_eval(record)
    if not math.isfinite(record["val_loss"]):
        # finite training losses, then an update that left the weights non-finite
        run.meta["diverged_at_step"] = state.step
        return DIVERGED
    run.since = _SinceEval.on(run.device)
    improved = record["val_loss"] < state.best_loss - cfg.min_delta
    if record["val_loss"] < state.best_loss:
        state.best_loss, state.best_step = record["val_loss"], state.step
        if cfg.save_best_checkpoint and run.run_dir is not None:
            save_atomic(run.run_dir / BEST_CHECKPOINT_FILE, {"model": run.model.state_dict()})
    state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
    bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_loss']:.3f}",
                    lr=f"{record['lr'][run.optimizers[0][0]]:.2e}",
                    tok_s=f"{record['tokens_per_s']:.0f}")
    status = EARLY_STOPPED if (cfg.early_stopping
                               and state.evals_without_improvement >= cfg.patience) else RUNNING
    if (len(state.evals) % cfg.checkpoint_every_evals == 0 or status == EARLY_STOPPED
            or state.step >= cfg.max_steps):
        run.checkpoint()
    run.write(RUNNING)
    return status


def _divergence_message(cfg: RunConfig, step: int) -> str:
    if cfg.fault_nan_at_step == step:
        return f"the loss became NaN at step {step}, as fault_nan_at_step = {step} asks"
    return (f"the loss became NaN or infinite by step {step}; lower lr (now {cfg.lr}) or raise "
            "warmup_ratio, then run again")


def _eval_record(run: _Run) -> EvalRecord:
    """The eval's record for metrics.json: losses on the val split (each sequence too) and
    the train subset, LR per group, routing statistics since the last eval."""
    from moe_core.analysis.routing import max_violation

    cfg, state, since, model = run.cfg, run.state, run.since, run.model
    routing = []
    for moe in model.moe_layers:
        stats = {k: v.cpu() for k, v in moe.read_stats().items()}
        load = stats["tokens_per_expert"]
        routing.append(layer_routing(
            tokens_per_expert=load.tolist(),
            mean_router_prob=stats["mean_router_prob"].tolist(),
            router_entropy=stats["router_entropy"].item(),
            balance_loss=stats["balance_loss"].item(),
            z_loss=stats["z_loss"].item(),
            max_violation=float(max_violation(load.numpy())),
            coselection=stats["coselection"].tolist(),
        ))
    val = evaluate(model, run.val_windows, cfg.batch_size, run.device, run.dtype)
    sub = evaluate(model, run.train_subset, cfg.batch_size, run.device, run.dtype)
    updates = state.step // cfg.grad_accum_steps
    previous_elapsed = state.evals[-1]["elapsed_s"] if state.evals else 0.0
    previous_step = state.evals[-1]["step"] if state.evals else 0
    window_s = max(state.elapsed_s - previous_elapsed, 1e-9)
    return eval_record(
        step=state.step,
        optimizer_update=updates,
        tokens_seen=state.step * run.tokens_per_step,
        epochs_seen=state.step * cfg.batch_size / len(run.train_windows),
        elapsed_s=state.elapsed_s,
        tokens_per_s=(state.step - previous_step) * run.tokens_per_step / window_s,
        lr={name: peak * lr_factor(updates, cfg) if updates else 0.0
            for name, _, peak in run.optimizers},
        # the LR the scheduler holds for the next update: what the reference logged
        lr_next={name: peak * lr_factor(updates + 1, cfg) for name, _, peak in run.optimizers},
        train_loss=float(since.ce / since.steps),
        aux_loss=float(since.aux / since.steps),
        grad_norm=float(since.grad_norm),
        val_loss=val["loss"],
        val_loss_se=val["loss_se"],
        # every val sequence's mean loss, in the split's order: runs on the same val split
        # (data.stats.val.windows_sha) are compared sequence by sequence, which removes the
        # split's sampling error shared by both sides (moe_core.analysis.effects)
        val_loss_per_sequence=[round(v, 6) for v in val["per_sequence"].tolist()],
        val_accuracy=val["accuracy"],
        val_perplexity=val["perplexity"],
        train_subset_loss=sub["loss"],
        train_subset_accuracy=sub["accuracy"],
        routing=routing,
    )


