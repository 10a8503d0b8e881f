"""Training throughput of our MoE layer and model on this machine, side by side with a naive
MoE, Hugging Face's Mixtral sparse MoE block, and the machine's own fp32 matmul rate.

    python benchmarks/bench_moe.py                 # everything (~15 minutes on 2 cores)
    python benchmarks/bench_moe.py --quick         # fewer repeats, the paper step timed once
    python benchmarks/bench_moe.py --only layers   # just the layer table
    python benchmarks/bench_moe.py --only layers --device cuda --bf16 --fp16   # on a GPU

On a GPU, benchmarks/gpu_check.py runs the layer table with the whole-model training checks.

Every figure is the median of `--repeats` timed runs after `--warmup` untimed ones; the
implementations of one table are timed in interleaved rounds, so a burst of load from
another process hits all of them alike. FLOPs count multiply-adds as 2; a backward pass
costs twice its forward. Ours and the naive baseline have 2 matrices per expert (SiLU MLP),
Mixtral 3 (SwiGLU), so they are compared by FLOP rate as well as by time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moe_core.config.run_config import RunConfig, build_config
from moe_core.model.transformer import MoE, MoEModel
from moe_core.training.objective import cross_entropy, evaluate, total_loss
from moe_core.training.optimizers import build_optimizers

# ---------------------------------------------------------------- timing


def timed_rounds(fns: dict[str, Callable[[], object]], warmup: int, repeats: int,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of each fn, timed in interleaved rounds after warm-up (by
    `clock`: wall time, or time.process_time for the CPU time of this process's threads)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            samples[name].append(clock() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------- the machine's limit


def matmul_rates(shapes: dict[str, tuple[int, int, int]], dtype: torch.dtype, warmup: int,
                 repeats: int) -> dict[str, float]:
    """GFLOP/s of torch.mm for named (m, k, n) shapes: (m, k) @ (k, n)."""
    fns, flops = {}, {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        out = torch.empty(m, n, dtype=dtype)
        fns[name] = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)
        flops[name] = 2 * m * k * n
    seconds = timed_rounds(fns, warmup, repeats)
    return {name: flops[name] / seconds[name] / 1e9 for name in shapes}


# ---------------------------------------------------------------- the naive baseline


class NaiveMoE(nn.Module):
    """The reference's design: a router as ours (noisy top-k, softmax over the chosen logits,
    Switch balance loss) and, per expert, one boolean-mask pass over all tokens."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.num_experts, self.top_k, self.noise_std = cfg.num_experts, cfg.top_k, \
            cfg.router_noise_std
        self.gate = nn.Linear(cfg.d_model, cfg.num_experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff, bias=False), nn.SiLU(),
                          nn.Dropout(cfg.dropout), nn.Linear(cfg.d_ff, cfg.d_model, bias=False))
            for _ in range(cfg.num_experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        logits = self.gate(x)
        if self.training and self.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.noise_std
        top_logits, indices = torch.topk(logits, self.top_k, dim=-1)
        weights = torch.softmax(top_logits, dim=-1)
        probs = torch.softmax(logits, dim=-1)
        y = torch.zeros_like(x)
        load = []
        for e, expert in enumerate(self.experts):
            hit = indices == e  # (T, k)
            mask = hit.any(-1)
            load.append(hit.sum())
            token = mask.nonzero().squeeze(-1)
            weight = (weights * hit).sum(-1)[mask]
            y = y.index_add(0, token, (weight[:, None] * expert(x[mask])).to(y.dtype))
        share = torch.stack(load).float() / indices.numel()
        balance = self.num_experts * (share * probs.mean(0)).sum()
        return y.reshape(shape), balance


# ---------------------------------------------------------------- the peer


def mixtral_block(cfg: RunConfig, implementation: str) -> nn.Module:
    """transformers' MixtralSparseMoeBlock at our shapes (its experts are SwiGLU: 3 matrices)."""
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = MixtralConfig(hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                           num_local_experts=cfg.num_experts, num_experts_per_tok=cfg.top_k,
                           router_jitter_noise=0.0, experts_implementation=implementation)
    block = MixtralSparseMoeBlock(config)
    for p in block.parameters():  # its weights are created uninitialised
        nn.init.normal_(p, std=0.02)
    return block


# ---------------------------------------------------------------- the layer table


@dataclasses.dataclass
class LayerShape:
    name: str
    d_model: int
    d_ff: int
    num_experts: int
    top_k: int
    tokens: int  # batch_size x seq_len

    def flops(self, matrices_per_expert: int) -> float:
        """Forward FLOPs of one MoE layer: router plus top_k experts per token."""
        router = 2 * self.tokens * self.d_model * self.num_experts
        experts = 2 * self.tokens * self.top_k * matrices_per_expert * self.d_model * self.d_ff
        return router + experts


def layer_shape(preset: str) -> tuple[LayerShape, RunConfig]:
    cfg = build_config("baseline", preset)
    return LayerShape(preset, cfg.d_model, cfg.d_ff, cfg.num_experts, cfg.top_k,
                      cfg.batch_size * cfg.seq_len), cfg


@dataclasses.dataclass
class LayerImpl:
    name: str
    module: nn.Module
    matrices_per_expert: int
    returns_balance: bool  # ours and the naive one also return the balance loss
    autocast: torch.dtype | None = None


def layer_impls(cfg: RunConfig, args) -> list[LayerImpl]:
    """Ours (the kernel the device picks, then each expert kernel forced), the reference loop,
    the naive layer and Mixtral's block; with --bf16 / --fp16 each again under autocast."""
    torch.manual_seed(0)
    ours = MoE(cfg)
    for p in ours.parameters():
        nn.init.normal_(p, std=0.02)

    def copy_of_ours(**attributes) -> MoE:
        moe = MoE(cfg)
        moe.load_state_dict(ours.state_dict())
        for target, value in attributes.items():
            obj, name = (moe.experts, "kernel") if target == "kernel" else (moe, target)
            setattr(obj, name, value)
        return moe

    impls = [
        LayerImpl("ours (fast path)", ours, 2, True),
        # the GPU's paths, runnable on the CPU too
        LayerImpl("ours (grouped_mm)", copy_of_ours(kernel="grouped_mm"), 2, True),
        LayerImpl("ours (padded_bmm)", copy_of_ours(kernel="padded_bmm"), 2, True),
        LayerImpl("ours (reference loop)", copy_of_ours(reference_dispatch=True), 2, True),
        LayerImpl("naive (mask per expert)", NaiveMoE(cfg), 2, True),
    ]
    for p in impls[-1].module.parameters():
        nn.init.normal_(p, std=0.02)
    if not args.no_peer:
        impls += [LayerImpl("Mixtral eager", mixtral_block(cfg, "eager"), 3, False),
                  LayerImpl("Mixtral grouped_mm", mixtral_block(cfg, "grouped_mm"), 3, False)]
    if args.compile:
        impls.append(LayerImpl("ours + torch.compile", torch.compile(ours), 2, True))
    plain = [i for i in impls if "compile" not in i.name]
    for flag, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if getattr(args, flag, False):
            impls += [dataclasses.replace(i, name=f"{i.name} {flag}", autocast=dtype)
                      for i in plain]
    return impls


def bench_layers(shape: LayerShape, cfg: RunConfig, peak: float, args) -> list[dict]:
    """Forward and forward+backward time of each implementation on one batch of tokens."""
    device = torch.device(args.device)
    impls = layer_impls(cfg, args)
    for impl in impls:
        impl.module.to(device)
    torch.manual_seed(1)
    x = torch.randn(1, shape.tokens, shape.d_model, device=device, requires_grad=True)
    grad_y = torch.randn(1, shape.tokens, shape.d_model, device=device)
    one = torch.ones((), device=device)

    def forward(impl: LayerImpl):
        ctx = torch.autocast(device.type, dtype=impl.autocast) if impl.autocast \
            else contextlib.nullcontext()
        with ctx:
            out = impl.module(x)
        if impl.returns_balance:
            return [out[0], out[1]], [grad_y.to(out[0].dtype), one]
        return [out], [grad_y.to(out.dtype)]

    def forward_backward(impl: LayerImpl):
        outputs, grads = forward(impl)
        torch.autograd.backward(outputs, grads)
        for p in [x, *impl.module.parameters()]:
            p.grad = None

    def finished(fn: Callable[[], object]) -> Callable[[], object]:
        """fn, then a wait for the GPU to finish it, so that the timer measures the work."""
        if device.type != "cuda":
            return fn
        return lambda: (fn(), torch.cuda.synchronize())

    for impl in impls:
        impl.module.train()
    fwd = timed_rounds({i.name: finished(lambda i=i: forward(i)) for i in impls}, args.warmup,
                       args.repeats)
    fwd_bwd = timed_rounds({i.name: finished(lambda i=i: forward_backward(i)) for i in impls},
                           args.warmup, args.repeats)
    rows = []
    for impl in impls:
        flops = 3 * shape.flops(impl.matrices_per_expert)
        rows.append({"shape": shape.name, "impl": impl.name, "fwd_ms": 1e3 * fwd[impl.name],
                     "fwd_bwd_ms": 1e3 * fwd_bwd[impl.name], "gflop": flops / 1e9,
                     "gflop_s": flops / fwd_bwd[impl.name] / 1e9,
                     "peak_share": flops / fwd_bwd[impl.name] / 1e9 / peak})
    by_name = {r["impl"]: r for r in rows}
    naive = by_name.get("naive (mask per expert)")
    for r in rows:
        r["x_naive_time"] = naive["fwd_bwd_ms"] / r["fwd_bwd_ms"]
        for peer in ("Mixtral eager", "Mixtral grouped_mm"):
            if peer in by_name:
                r[f"x_{peer}_flop"] = r["gflop_s"] / by_name[peer]["gflop_s"]
    return rows


# ---------------------------------------------------------------- training step and eval


def model_flops_per_token(model: MoEModel, cfg: RunConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x active parameters + attention scores (nanoGPT/PaLM
    convention, 12 x layers x d_model x seq_len, the full causal square counted)."""
    active = model.parameter_counts()["active_per_token"]
    return 6 * active + 12 * cfg.n_layers * cfg.d_model * seq_len


def muon_seconds_by_shape(muon: torch.optim.Optimizer, repeats: int) -> tuple[float, float]:
    """(this Muon, torch.optim.Muon with its bf16 Newton-Schulz) seconds for all of the
    optimizer's matrices, timed on one matrix of each distinct shape and scaled by how many
    matrices have that shape."""
    count: dict[tuple, int] = {}
    first: dict[tuple, torch.Tensor] = {}
    for p in muon.param_groups[0]["params"]:
        count[tuple(p.shape)] = count.get(tuple(p.shape), 0) + 1
        first.setdefault(tuple(p.shape), p)
    ours = timed_rounds({str(s): type(muon)([p], **muon.defaults).step
                         for s, p in first.items()}, 1, repeats)
    torch_bf16 = timed_rounds({str(s): torch.optim.Muon([p], **muon.defaults).step
                               for s, p in first.items()}, 1, repeats)
    return (sum(count[s] * ours[str(s)] for s in first),
            sum(count[s] * torch_bf16[str(s)] for s in first))


def bench_optimizer(model: MoEModel, cfg: RunConfig, repeats: int, full: bool) -> dict:
    """Seconds of one optimizer update as the trainer does it: clip, Muon, AdamW. Muon's time is
    summed over shapes (see muon_seconds_by_shape) and, if `full`, also timed whole."""
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {name: opt for name, opt, _ in build_optimizers(model, cfg, torch.device("cpu"))}
    muon, adamw = optimizers["muon"], optimizers["adamw"]

    def clip():
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)

    times = timed_rounds({"clip": clip, "adamw": adamw.step}, 1, repeats)
    muon_by_shape, muon_torch_bf16 = muon_seconds_by_shape(muon, repeats)
    muon_full = timed_rounds({"muon": muon.step}, 1, repeats)["muon"] if full else None
    muon_s = muon_full if full else muon_by_shape
    model.zero_grad(set_to_none=True)
    return {"update_s": times["clip"] + times["adamw"] + muon_s, "muon_s": muon_s,
            "muon_full_s": muon_full, "muon_by_shape_s": muon_by_shape,
            "muon_torch_bf16_s": muon_torch_bf16, "adamw_s": times["adamw"],
            "clip_s": times["clip"],
            "muon_matrices": len(muon.param_groups[0]["params"])}


def bench_training(preset: str, args, peak: float) -> dict:
    """Tokens/s of a micro-step (forward, CE + aux loss, backward), of an optimizer update, of a
    whole step as the trainer runs it (grad_accum micro-steps per update), and of evaluation.
    The model has the preset's vocabulary (49,152 for paper) and sees random tokens."""
    cfg = build_config("baseline", preset)
    torch.manual_seed(0)
    model = MoEModel(cfg).train()
    tokens = cfg.batch_size * cfg.seq_len
    windows = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1))
    heavy = preset == "paper"
    warmup = 1 if heavy else args.warmup
    repeats = args.step_repeats if heavy else 4 * args.repeats

    def micro_step(autocast: bool = False):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast \
            else contextlib.nullcontext()
        with ctx:
            logits, balance, z_loss = model(windows[:, :-1])
            ce = cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())
        loss, _ = total_loss(cfg, ce, balance, z_loss)
        (loss / cfg.grad_accum_steps).backward()

    fns = {"fp32": micro_step}
    if args.bf16 and not heavy:  # bf16 matmuls run at ~1 GFLOP/s on AVX2: not at paper size
        fns["bf16"] = lambda: micro_step(autocast=True)
    micro = timed_rounds(fns, warmup, repeats)
    model.zero_grad(set_to_none=True)
    opt = bench_optimizer(model, cfg, max(2, args.repeats // 2) if heavy else repeats,
                          full=not heavy or args.full_optimizer)

    n_eval = cfg.batch_size * (1 if heavy else 4)
    val = torch.randint(0, cfg.vocab_size, (n_eval, cfg.seq_len + 1))
    eval_s = timed_rounds({"eval": lambda: evaluate(model, val, cfg.batch_size,
                                                    torch.device("cpu"), None)},
                          warmup, max(repeats, 3))["eval"]

    per_token = model_flops_per_token(model, cfg, cfg.seq_len)
    accum = cfg.grad_accum_steps
    step_s = micro["fp32"] + opt["update_s"] / accum  # per micro-batch, the update amortised
    step_s_torch_muon = step_s + (opt["muon_torch_bf16_s"] - opt["muon_s"]) / accum
    result = {
        "preset": preset, "vocab_size": cfg.vocab_size, "tokens_per_micro_step": tokens,
        "grad_accum_steps": accum, "flops_per_token": per_token,
        "active_params": model.parameter_counts()["active_per_token"],
        "micro_step_s": micro["fp32"], "micro_tokens_s": tokens / micro["fp32"],
        "micro_peak_share": per_token * tokens / micro["fp32"] / 1e9 / peak,
        "step_s": step_s, "step_tokens_s": tokens / step_s,
        "step_peak_share": per_token * tokens / step_s / 1e9 / peak,
        "optimizer_share": opt["update_s"] / accum / step_s,
        "step_tokens_s_torch_muon": tokens / step_s_torch_muon,
        "eval_tokens_s": n_eval * cfg.seq_len / eval_s,
        **{f"optimizer_{k}": v for k, v in opt.items()},
    }
    if "bf16" in micro:
        result["micro_tokens_s_bf16"] = tokens / micro["bf16"]
    return result


# ---------------------------------------------------------------- the cpu preset, before and after

# moe_core's model, optim and train before issue 14 (the cpu-preset step, eval and start-up)
BEFORE_REV = "f95a426"
REPO = Path(__file__).resolve().parents[1]


def implementation_at(rev: str, tag: str) -> types.SimpleNamespace:
    """moe_core's model, optim and train modules at git revision `rev`, imported beside today's
    as moe_core_<tag>_<module> (their imports of one another rewired; the rest is today's)."""
    folder = Path(tempfile.mkdtemp(prefix=f"moe_core_{tag}_"))
    modules = ("model", "optim", "train")
    for name in modules:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:moe_core/{name}.py"],
                                capture_output=True, text=True, check=True).stdout
        for other in modules:
            source = source.replace(f"from moe_core.{other} import",
                                    f"from moe_core_{tag}_{other} import")
        (folder / f"moe_core_{tag}_{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return types.SimpleNamespace(**{name: importlib.import_module(f"moe_core_{tag}_{name}")
                                    for name in modules})


def today() -> types.SimpleNamespace:
    import moe_core.model.transformer
    import moe_core.training.optimizers
    import moe_core.training.trainer

    return types.SimpleNamespace(model=moe_core.model.transformer,
                                 optim=moe_core.training.optimizers,
                                 train=moe_core.training.trainer)


def cpu_run_parts(impl: types.SimpleNamespace, cfg: RunConfig, data) -> dict:
    """A model and optimizers of `impl` at the cpu preset, and the two parts of a run as the
    trainer runs them: one whole step (grad_accum micro-steps + the optimizer update) and one
    eval (the val split, then the train subset)."""
    train = impl.train
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = impl.model.MoEModel(cfg, vocab_size=data.vocab_size).train()
    optimizers = train.build_optimizers(model, cfg, cpu)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    windows = data.train
    subset = windows[torch.randperm(len(windows))[:cfg.train_subset_sequences or len(data.val)]]
    accum = cfg.grad_accum_steps
    cross_entropy = getattr(train, "cross_entropy", F.cross_entropy)  # the trainer's loss

    def step():
        for _ in range(accum):
            w = windows[torch.randint(len(windows), (cfg.batch_size,))]
            logits, balance, z_loss = model(w[:, :-1])
            ce = cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten())
            loss, _ = train.total_loss(cfg, ce, balance, z_loss)
            (loss / accum).backward()
        train._optimizer_update(model, optimizers, scaler, cfg, cfg.optimizer_updates // 2)

    def evaluate():
        train.evaluate(model, data.val, cfg.batch_size, cpu, None)
        train.evaluate(model, subset, cfg.batch_size, cpu, None)

    return {"step": step, "eval": evaluate,
            "eval_sequences": len(data.val) + len(subset)}


def bench_cpu_run(args) -> list[dict]:
    """Today's implementation against the one at --before on the cpu preset's data: the whole
    step and one eval in interleaved rounds, at 1 torch thread (each of a suite's two parallel
    runs on 2 cores) and at 2; wall and CPU time; and the training part of a run from them."""
    from moe_core.data.splits import prepare_data

    cfg = build_config("baseline", "cpu")
    data = prepare_data(cfg)
    impls = {"before": implementation_at(args.before, "before"), "after": today()}
    parts = {name: cpu_run_parts(impl, cfg, data) for name, impl in impls.items()}
    tokens = cfg.batch_size * cfg.seq_len * cfg.grad_accum_steps
    n_evals = math.ceil(cfg.max_steps / cfg.eval_every)
    threads_before = torch.get_num_threads()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        timings = {}
        for clock_name, clock in (("wall", time.perf_counter), ("cpu", time.process_time)):
            for part in ("step", "eval"):
                fns = {name: p[part] for name, p in parts.items()}
                for name, seconds in timed_rounds(fns, args.warmup, 4 * args.repeats,
                                                  clock).items():
                    timings[name, part, clock_name] = seconds
        for name, p in parts.items():
            t = {(part, c): timings[name, part, c] for part in ("step", "eval")
                 for c in ("wall", "cpu")}
            rows.append({
                "impl": name, "rev": args.before if name == "before" else "working tree",
                "threads": threads, "step_s": t["step", "wall"], "step_cpu_s": t["step", "cpu"],
                "step_tokens_s": tokens / t["step", "wall"],
                "eval_s": t["eval", "wall"], "eval_cpu_s": t["eval", "cpu"],
                "eval_tokens_s": p["eval_sequences"] * cfg.seq_len / t["eval", "wall"],
                # the training cell of one run: its steps and evals (no start-up, no writes)
                "run_train_s": cfg.optimizer_updates * t["step", "wall"]
                + n_evals * t["eval", "wall"],
                "run_train_cpu_s": cfg.optimizer_updates * t["step", "cpu"]
                + n_evals * t["eval", "cpu"],
            })
    torch.set_num_threads(threads_before)
    by = {(r["impl"], r["threads"]): r for r in rows}
    for r in rows:
        before = by["before", r["threads"]]
        r["x_step"] = before["step_s"] / r["step_s"]
        r["x_step_cpu"] = before["step_cpu_s"] / r["step_cpu_s"]
        r["x_eval"] = before["eval_s"] / r["eval_s"]
        r["x_run_train_cpu"] = before["run_train_cpu_s"] / r["run_train_cpu_s"]
    return rows


# ---------------------------------------------------------------- report


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    print(line(headers))
    print("-" * len(line(headers)))
    for r in rows:
        print(line(r))
    print()


def report_layers(rows: list[dict]) -> None:
    headers = ["implementation", "fwd ms", "fwd+bwd ms", "GFLOP", "GFLOP/s", "% peak",
               "x naive (time)", "x Mixtral eager (GFLOP/s)", "x Mixtral grouped (GFLOP/s)"]
    body = [[r["impl"], f"{r['fwd_ms']:.2f}", f"{r['fwd_bwd_ms']:.2f}", f"{r['gflop']:.3f}",
             f"{r['gflop_s']:.1f}", f"{100 * r['peak_share']:.0f}%",
             f"{r['x_naive_time']:.2f}",
             f"{r.get('x_Mixtral eager_flop', float('nan')):.2f}",
             f"{r.get('x_Mixtral grouped_mm_flop', float('nan')):.2f}"] for r in rows]
    print_table(headers, body)


def report_training(results: list[dict]) -> None:
    print("Training: micro-step = forward, CE + aux loss, backward; update = clip + Muon + "
          "AdamW (train.build_optimizers);\nstep = grad_accum micro-steps + one update, per "
          "micro-batch; eval = train.evaluate (inference mode)")
    headers = ["preset", "tokens", "micro s", "micro tok/s", "micro %peak", "update s",
               "Muon s", "step tok/s", "step %peak", "optimizer share",
               "step tok/s, torch's bf16 Muon", "eval tok/s"]
    body = []
    for r in results:
        muon = f"{r['optimizer_muon_s']:.2f}" + ("" if r["optimizer_muon_full_s"] else "*")
        body.append([r["preset"], str(r["tokens_per_micro_step"]), f"{r['micro_step_s']:.3f}",
                     f"{r['micro_tokens_s']:.0f}", f"{100 * r['micro_peak_share']:.0f}%",
                     f"{r['optimizer_update_s']:.2f}", muon, f"{r['step_tokens_s']:.0f}",
                     f"{100 * r['step_peak_share']:.0f}%", f"{100 * r['optimizer_share']:.0f}%",
                     f"{r['step_tokens_s_torch_muon']:.0f}", f"{r['eval_tokens_s']:.0f}"])
    print_table(headers, body)
    print("%peak: model FLOPs (6 x active params + 12 x layers x d_model x seq_len, per token) "
          "over time, as a share of the fp32 peak above")
    print("* Muon summed over one matrix of each shape x its count (--full-optimizer times the "
          "whole update); \"torch's bf16 Muon\": the step with torch.optim.Muon, whose "
          "Newton-Schulz runs in bf16 (moe_core's Muon runs it in fp32 on the CPU)")
    for r in results:
        if r["optimizer_muon_full_s"]:
            print(f"{r['preset']}: Muon whole {r['optimizer_muon_full_s']:.3f} s, summed by "
                  f"shape {r['optimizer_muon_by_shape_s']:.3f} s")
        if "micro_tokens_s_bf16" in r:
            print(f"{r['preset']}: micro-step under bf16 autocast "
                  f"{r['micro_tokens_s_bf16']:.0f} tok/s vs fp32 {r['micro_tokens_s']:.0f}")
    print()


def report_cpu_run(rows: list[dict]) -> None:
    print("The cpu preset: whole step = grad_accum micro-steps + one optimizer update, as the "
          "trainer runs them; eval = the val split + the train subset;\nrun = the training "
          "part of one run (its steps and evals, no start-up or writes); x = before / after")
    headers = ["implementation", "threads", "step ms", "step tok/s", "step CPU ms",
               "x step", "eval ms", "eval CPU ms", "x eval", "run CPU s", "x run CPU"]
    body = [[f"{r['impl']} ({r['rev']})", str(r["threads"]), f"{1e3 * r['step_s']:.0f}",
             f"{r['step_tokens_s']:.0f}", f"{1e3 * r['step_cpu_s']:.0f}", f"{r['x_step']:.2f}",
             f"{1e3 * r['eval_s']:.0f}", f"{1e3 * r['eval_cpu_s']:.0f}", f"{r['x_eval']:.2f}",
             f"{r['run_train_cpu_s']:.1f}", f"{r['x_run_train_cpu']:.2f}"] for r in rows]
    print_table(headers, body)


def report_targets(out: dict) -> None:
    """The issue's targets, met or not, from the figures above."""
    checks = []
    layers = {(r["shape"], r["impl"]): r for r in out.get("layers", [])}
    for shape, need in (("cpu", 1.3), ("paper", 1.0)):
        r = layers.get((shape, "ours (fast path)"))
        if r:
            checks.append((f"{shape}: ours >= {need}x naive (time)", r["x_naive_time"], need))
            for peer in ("Mixtral eager", "Mixtral grouped_mm"):
                if f"x_{peer}_flop" in r:
                    checks.append((f"{shape}: ours >= 1.0x {peer} (GFLOP/s)",
                                   r[f"x_{peer}_flop"], 1.0))
    for r in out.get("cpu_run", []):
        if r["impl"] == "after":
            checks.append((f"cpu whole step >= 2x before ({r['threads']} thread(s), wall)",
                           r["x_step"], 2.0))
    for r in out.get("training", []):
        if r["preset"] == "paper":
            checks.append(("paper micro-step (fwd+bwd) >= 50% of peak", r["micro_peak_share"],
                           0.5))
            checks.append(("paper whole step (with optimizer) >= 50% of peak",
                           r["step_peak_share"], 0.5))
    if checks:
        print("Targets")
        print_table(["target", "measured", "met"],
                    [[name, f"{value:.2f}", "yes" if value >= need else "NO"]
                     for name, value, need in checks])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per figure (median); 4x as many for the cheap cpu-shape "
                        "figures (default 5)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed runs first (paper-sized figures: 1) (default 2)")
    parser.add_argument("--step-repeats", type=int, default=3,
                        help="timed paper training steps, ~1 minute each (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="--repeats 3 --warmup 1 --step-repeats 1")
    parser.add_argument("--only", choices=["layers", "training", "cpu-run"], action="append",
                        help="run only this section (repeatable); the matmul peak always runs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for everything (default: torch's choice)")
    parser.add_argument("--bf16", action="store_true",
                        help="add bf16-autocast rows: layers at the cpu shape, cpu-preset step")
    parser.add_argument("--fp16", action="store_true",
                        help="add fp16-autocast layer rows (on a CPU: at the cpu shape)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the layer table runs (the training section runs on the CPU; "
                        "benchmarks/gpu_check.py trains on a GPU)")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile'd layer row")
    parser.add_argument("--no-peer", action="store_true", help="skip the Mixtral block")
    parser.add_argument("--full-optimizer", action="store_true",
                        help="also time the paper model's whole Muon update (minutes on AVX2)")
    parser.add_argument("--before", default=BEFORE_REV,
                        help="git revision whose model, optim and train the cpu-run section "
                        f"compares with today's (default {BEFORE_REV}, before issue 14)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.step_repeats = 3, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = set(args.only or ["layers", "training", "cpu-run"])

    shapes = {name: layer_shape(name) for name in ("paper", "cpu")}
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, THP_MEM_ALLOC_ENABLE="
          f"{os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    print(f"median of --repeats {args.repeats} after --warmup {args.warmup}; load average "
          f"(1, 5, 15 min) at start {load_average()}\n")

    mm_shapes = {"square 2048": (2048, 2048, 2048)}
    for s, _ in shapes.values():
        rows = s.tokens * s.top_k // s.num_experts  # one expert's tokens, balanced
        mm_shapes[f"{s.name} expert in ({rows}x{s.d_model}x{s.d_ff})"] = (rows, s.d_model, s.d_ff)
        mm_shapes[f"{s.name} expert out ({rows}x{s.d_ff}x{s.d_model})"] = (rows, s.d_ff, s.d_model)
    rates = matmul_rates(mm_shapes, torch.float32, args.warmup, args.repeats)
    bf16 = matmul_rates({"square 512, bf16": (512, 512, 512)}, torch.bfloat16, 1,
                        max(1, args.repeats // 2))
    peak = max(rates.values())
    print("torch.mm, fp32 unless marked")
    print_table(["shape (m x k x n)", "GFLOP/s"],
                [[k, f"{v:.1f}"] for k, v in {**rates, **bf16}.items()])
    print(f"peak = {peak:.1f} GFLOP/s, the best fp32 figure above\n")
    out = {"threads": torch.get_num_threads(), "args": {k: str(v) for k, v in vars(args).items()},
           "matmul_gflop_s": {**rates, **bf16}, "peak_gflop_s": peak,
           "load_start": load_average()}

    if "layers" in sections:
        out["layers"] = []
        for name in ("paper", "cpu"):
            s, cfg = shapes[name]
            print(f"MoE layer at the {name} shape: d_model {s.d_model}, d_ff {s.d_ff}, "
                  f"{s.num_experts} experts, top-{s.top_k}, {s.tokens} tokens; training mode, "
                  f"dropout {cfg.dropout} in ours and naive (Mixtral has none)")
            cheap = name != "paper"
            layer_args = argparse.Namespace(**{
                # bf16 and fp16 at paper size take minutes on a CPU
                **vars(args), "bf16": args.bf16 and (cheap or args.device == "cuda"),
                "fp16": args.fp16 and (cheap or args.device == "cuda"),
                "warmup": args.warmup if cheap else 1,
                "repeats": 4 * args.repeats if cheap else args.repeats})
            rows = bench_layers(s, cfg, peak, layer_args)
            report_layers(rows)
            out["layers"] += rows
    if "training" in sections:
        out["training"] = [bench_training(name, args, peak) for name in ("paper", "cpu")]
        report_training(out["training"])
    if "cpu-run" in sections:
        out["cpu_run"] = bench_cpu_run(args)
        report_cpu_run(out["cpu_run"])
    report_targets(out)
    out["load_end"] = load_average()
    print(f"load average at end {out['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
