"""The one command for the day a GPU is lent: the CUDA tests, the paper model trained for a fixed
number of steps under each precision, and the MoE layer benchmark on CUDA, written to one JSON
and one table.

    python3 benchmarks/gpu_check.py --out DIR            # on one CUDA GPU: ~3-5 min on an H100
    python3 benchmarks/gpu_check.py --out DIR --dry-run  # every stage, tiny, on the CPU (CI)

It runs from a plain copy of the repository, without installing it and without network. It
needs Python 3.10+ with torch >= 2.9 built for CUDA, numpy, pyyaml, tokenizers, tqdm and pytest;
transformers (the `bench` extra) adds the Mixtral rows of the layer table, which are skipped,
with the reason printed, when it is missing. Stages, in order, each recorded even if another
fails (exit status 1 if any failed):

1. environment: the GPU, its compute capability, its bf16 peak (datasheet, dense) and the bf16
   matmul rate measured here (an 8192^3 product);
2. tests: tests/training/test_trainer_on_cuda.py (a training step under
   torch.cuda.set_sync_debug_mode("error") for every precision and expert kernel),
   tests/model/test_experts_on_cuda.py (each expert kernel against the reference loop on the
   GPU), tests/model/test_transformer.py, tests/training/test_device.py;
3. training: the paper model (vocab 49,152, seq 512, batch 24 x accumulation 4, Muon + AdamW) on
   built-in synthetic data, --updates optimizer updates under fp16 (+ GradScaler, the
   reference's), bf16 and fp32 autocast: tokens/s, MFU against the bf16 peak, peak memory, the
   train loss of the last update and the val loss after it, host syncs per update;
4. layers: benchmarks/bench_moe.py's layer table on CUDA at the paper and cpu shapes: ours (each
   expert kernel), the reference loop, the naive layer, Mixtral's block; fp32, bf16, fp16.

Files: DIR/gpu_check.json (every figure; rewritten after each stage) and DIR/gpu_check.txt (the
tables as printed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_moe  # noqa: E402

from moe_core.config.run_config import build_config
from moe_core.data.splits import prepare_data
from moe_core.errors import UserInputError
from moe_core.model.experts import expert_kernel
from moe_core.model.transformer import MoEModel
from moe_core.training.device import autocast, autocast_dtype, grad_scaler
from moe_core.training.objective import cross_entropy, evaluate, total_loss
from moe_core.training.optimizers import (
    build_optimizers,
)
from moe_core.training.optimizers import (
    optimizer_update as _optimizer_update,
)
from moe_core.training.trainer import batch_indices

TEST_FILES = ["tests/training/test_trainer_on_cuda.py", "tests/model/test_experts_on_cuda.py",
              "tests/model/test_transformer.py", "tests/training/test_device.py"]
PRECISIONS = ["fp16", "bf16", "fp32"]
# dense bf16 tensor-core peak, TFLOP/s, from NVIDIA's datasheets; the first name that is part of
# torch.cuda.get_device_name() wins, so the more specific names come first
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0),
                    ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0), ("B200", 2250.0),
                    ("B100", 1750.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0),
                    ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0)]


class Check:
    """The JSON being built, the table text beside it, and the time left."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.budget_s, self.start = out, budget_s, time.perf_counter()
        self.result: dict = {"stages": {}}
        self.table = io.StringIO()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.table.write(text + "\n")

    def save(self) -> None:
        self.result["elapsed_s"] = round(self.elapsed_s(), 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1, default=str))
        (self.out / "gpu_check.txt").write_text(self.table.getvalue())

    def stage(self, name: str, fn, *args) -> None:
        """Run one stage; record its result, or its error, or that the budget ran out."""
        if self.elapsed_s() > self.budget_s:
            self.result["stages"][name] = {"status": "skipped",
                                           "reason": f"the {self.budget_s:.0f} s budget is spent"}
            self.say(f"== {name}: skipped, the {self.budget_s:.0f} s budget is spent\n")
            return
        self.say(f"== {name} (at {self.elapsed_s():.0f} s)")
        t0 = time.perf_counter()
        try:
            record = {"status": "ok", **fn(self, *args)}
        except Exception as e:  # one broken stage must not cost the others' figures
            traceback.print_exc()
            record = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()}
            self.say(f"{name} FAILED: {type(e).__name__}: {e}")
        record["stage_s"] = round(time.perf_counter() - t0, 1)
        self.result["stages"][name] = record
        self.say()
        self.save()


# ---------------------------------------------------------------- 1. environment


def datasheet_bf16_peak(device_name: str) -> float | None:
    """Dense bf16 TFLOP/s of a known GPU, else None."""
    return next((peak for name, peak in BF16_PEAK_TFLOPS if name in device_name), None)


def measured_matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = bench_moe.timed_rounds({"mm": _finished(lambda: a @ b, device)}, 2, repeats)["mm"]
    return 2 * n**3 / seconds / 1e12


def _finished(fn, device: torch.device):
    if device.type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize())


def stage_environment(check: Check, device: torch.device, dry_run: bool) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "cuda": torch.version.cuda, "device": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                   multiprocessors=props.multi_processor_count,
                   memory_gib=round(props.total_memory / 2**30, 1),
                   expert_kernel_bf16=expert_kernel(device, torch.bfloat16),
                   expert_kernel_fp16=expert_kernel(device, torch.float16))
        env["bf16_peak_tflops_datasheet"] = datasheet_bf16_peak(props.name)
        env["bf16_matmul_tflops_measured"] = measured_matmul_tflops(device, torch.bfloat16,
                                                                    8192, 10)
    else:
        env.update(device_name=platform.processor() or platform.machine(),
                   bf16_peak_tflops_datasheet=None,
                   fp32_matmul_tflops_measured=measured_matmul_tflops(device, torch.float32,
                                                                      256, 3))
    for key, value in env.items():
        check.say(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    if dry_run:
        check.say("dry run: the CPU stands in for the GPU; shapes and step counts are tiny")
    return env


def peak_tflops(env: dict) -> tuple[float, str]:
    """The peak MFU is measured against: the datasheet's bf16 figure, else the measured rate."""
    if env.get("bf16_peak_tflops_datasheet"):
        return env["bf16_peak_tflops_datasheet"], "datasheet bf16 (dense)"
    if env.get("bf16_matmul_tflops_measured"):
        return env["bf16_matmul_tflops_measured"], "measured bf16 matmul (no datasheet entry)"
    return env["fp32_matmul_tflops_measured"], "measured fp32 matmul (dry run)"


# ---------------------------------------------------------------- 2. tests


def stage_tests(check: Check, dry_run: bool, timeout_s: float) -> dict:
    """pytest in a child process (a CUDA error there cannot poison this one); the dry run only
    collects the CUDA-only files (CI runs the others), which proves they import."""
    files = [f for f in TEST_FILES if "cuda" in f] if dry_run else TEST_FILES
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    if dry_run:
        command.append("--collect-only")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                     os.environ.get("PYTHONPATH")]))}
    check.say(" ".join(command[2:]))
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"pytest did not finish within {timeout_s:.0f} s") from None
    tail = (done.stdout + done.stderr).strip().splitlines()[-25:]
    for line in tail:
        check.say("  " + line)
    if done.returncode != 0:
        raise RuntimeError(f"pytest exited with {done.returncode}: {tail[-1] if tail else ''}")
    return {"command": command[2:], "returncode": done.returncode, "summary": tail[-1]}


# ---------------------------------------------------------------- 3. training


def training_config(precision: str, dry_run: bool, device: torch.device):
    """The paper model and batch on built-in synthetic data (the smoke model in a dry run)."""
    overrides = {"data_source": "synthetic", "num_documents": 2000, "precision": precision,
                 "device": device.type, "name": f"gpu_check_{precision}"}
    if dry_run:
        return build_config("baseline", "smoke", {**overrides, "num_documents": 60})
    return build_config("baseline", "paper", overrides)


def count_host_syncs(fn) -> int:
    """How many times fn made the host wait for the GPU (torch's sync debug mode, as warnings)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def train_once(precision: str, updates: int, warmup_updates: int, dry_run: bool,
               device: torch.device, peak: float) -> dict:
    """`updates` optimizer updates as train.train runs them; the first warmup_updates untimed."""
    cfg = training_config(precision, dry_run, device)
    dtype = autocast_dtype(cfg, device)  # fp16 on a CPU: UserInputError, recorded as skipped
    data = prepare_data(cfg, Path(tempfile.mkdtemp(prefix="gpu_check_data_")))
    torch.manual_seed(0)
    model = MoEModel(cfg, vocab_size=data.vocab_size).to(device).train()
    optimizers = build_optimizers(model, cfg, device)
    scaler = grad_scaler(device, dtype)
    windows = data.train.to(device)
    step = 0
    last_ce = torch.zeros((), device=device)

    def one_update() -> None:
        nonlocal step, last_ce
        last_ce = torch.zeros((), device=device)
        for _ in range(cfg.grad_accum_steps):
            idx = batch_indices(step, len(windows), cfg.batch_size, 0)
            w = windows[idx.to(device, non_blocking=True)]  # as train.train: no host wait
            with autocast(device, dtype):
                logits, balance, z_loss = model(w[:, :-1])
                ce = cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten())
            loss, _ = total_loss(cfg, ce, balance, z_loss)
            scaler.scale(loss / cfg.grad_accum_steps).backward()
            last_ce += ce.detach() / cfg.grad_accum_steps
            step += 1
        _optimizer_update(model, optimizers, scaler, cfg, step // cfg.grad_accum_steps)

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup_updates):
        one_update()
    timed = updates - warmup_updates
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(timed):
        one_update()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = timed * cfg.grad_accum_steps * cfg.batch_size * cfg.seq_len
    flops_per_token = bench_moe.model_flops_per_token(model, cfg, cfg.seq_len)
    tokens_per_s = tokens / seconds
    record = {
        "precision": precision, "autocast_dtype": str(dtype).replace("torch.", ""),
        "grad_scaler": scaler.is_enabled(), "expert_kernel": expert_kernel(device, dtype or
                                                                           torch.float32),
        "shape": {"vocab_size": data.vocab_size, "seq_len": cfg.seq_len,
                  "batch_size": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps},
        "updates": updates, "timed_updates": timed, "timed_s": seconds,
        "tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token,
        "mfu": tokens_per_s * flops_per_token / (peak * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "train_loss_last_update": last_ce.item(),
        "val_loss": evaluate(model, data.val.to(device), cfg.batch_size, device, dtype)["loss"],
        "bayes_floor": data.bayes_floor,
        "grad_scale": scaler.get_scale() if scaler.is_enabled() else None,
    }
    # after the figures above: counting syncs runs one more update, more slowly
    record["host_syncs_per_update"] = count_host_syncs(one_update) if cuda else None
    return record


def stage_training(check: Check, device: torch.device, dry_run: bool, updates: int,
                   peak: float, peak_source: str) -> dict:
    check.say(f"MFU against {peak:.1f} TFLOP/s ({peak_source}); model FLOPs per token = "
              "6 x active parameters + 12 x layers x d_model x seq_len")
    runs, failed = {}, []
    warmup = 1 if dry_run else 2
    for precision in PRECISIONS:
        try:
            runs[precision] = train_once(precision, updates, warmup, dry_run, device, peak)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next precision's peak memory is its own
        except UserInputError as e:  # fp16 on a CPU
            runs[precision] = {"precision": precision, "skipped": str(e)}
            check.say(f"{precision}: skipped: {e}")
        except Exception as e:
            traceback.print_exc()
            runs[precision] = {"precision": precision, "error": f"{type(e).__name__}: {e}"}
            failed.append(precision)
    headers = ["precision", "expert kernel", "tokens/s", "MFU", "peak GiB", "train loss",
               "val loss", "syncs/update", "note"]
    rows = []
    for precision, r in runs.items():
        if "tokens_per_s" not in r:
            rows.append([precision] + [""] * 7 + ["skipped" if "skipped" in r else "FAILED"])
            continue
        memory = f"{r['peak_memory_gib']:.2f}" if r["peak_memory_gib"] is not None else "n/a"
        syncs = str(r["host_syncs_per_update"]) if r["host_syncs_per_update"] is not None \
            else "n/a"
        note = f"GradScaler, scale {r['grad_scale']:g}" if r["grad_scaler"] else ""
        rows.append([precision, r["expert_kernel"], f"{r['tokens_per_s']:,.0f}",
                     f"{100 * r['mfu']:.1f}%", memory, f"{r['train_loss_last_update']:.3f}",
                     f"{r['val_loss']:.3f}", syncs, note])
    shape = next((r["shape"] for r in runs.values() if "shape" in r), {})
    check.say(f"{updates} updates ({warmup} untimed) at {shape}")
    _table(check, headers, rows)
    if failed:
        raise RuntimeError(f"training failed under {', '.join(failed)}: see runs")
    return {"peak_tflops": peak, "peak_source": peak_source, "runs": runs}


# ---------------------------------------------------------------- 4. layers


def stage_layers(check: Check, device: torch.device, dry_run: bool, peak: float) -> dict:
    no_peer, peer_note = False, None
    try:
        import transformers  # noqa: F401
    except ImportError:
        no_peer, peer_note = True, "transformers is not installed (pip install -e '.[bench]')"
    shapes = ["smoke"] if dry_run else ["paper", "cpu"]
    args = argparse.Namespace(no_peer=no_peer, compile=False, bf16=True,
                              fp16=device.type == "cuda", device=device.type,
                              warmup=1 if dry_run else 3, repeats=1 if dry_run else 20)
    rows = []
    for name in shapes:
        shape, cfg = bench_moe.layer_shape(name)
        check.say(f"MoE layer at the {name} shape ({shape.tokens} tokens, d_model {shape.d_model}"
                  f", d_ff {shape.d_ff}); % peak against {peak:.1f} TFLOP/s")
        try:
            shape_rows = bench_moe.bench_layers(shape, cfg, peak * 1e3, args)
        except Exception as e:  # Mixtral's constructor follows transformers' API, which moves
            if args.no_peer:
                raise
            peer_note = f"Mixtral block failed: {type(e).__name__}: {e}"
            args.no_peer = True
            shape_rows = bench_moe.bench_layers(shape, cfg, peak * 1e3, args)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            bench_moe.report_layers(shape_rows)
        check.say(printed.getvalue().rstrip())
        rows += shape_rows
    if peer_note:
        check.say(f"Mixtral rows skipped: {peer_note}")
    return {"rows": rows, "mixtral_skipped": peer_note}


# ---------------------------------------------------------------- report


def _table(check: Check, headers: list[str], rows: list[list[str]]) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        bench_moe.print_table(headers, rows)
    check.say(printed.getvalue().rstrip())


def plan(check: Check, dry_run: bool, updates: int) -> None:
    where = "this CPU, tiny shapes (dry run)" if dry_run else "CUDA"
    check.say(f"gpu_check on {where}:")
    check.say(f"  tests: {' '.join(TEST_FILES)}" + (" (collected only)" if dry_run else ""))
    model = "the smoke model" if dry_run else "the paper model, vocab 49,152, seq 512, batch 24 x 4"
    check.say(f"  training: {model}, {updates} updates under {', '.join(PRECISIONS)}: "
              "tokens/s, MFU, peak memory, loss, host syncs per update")
    check.say(f"  layers: bench_moe's layer table at the {'smoke' if dry_run else 'paper and cpu'}"
              " shape(s): ours (auto, grouped_mm, padded_bmm), reference loop, naive, Mixtral")
    check.say()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for gpu_check.json and gpu_check.txt (created)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every stage on the CPU at tiny shapes (what CI runs)")
    parser.add_argument("--updates", type=int, default=None,
                        help="optimizer updates per precision, 4 micro-steps each "
                        "(default 25; dry run 2)")
    parser.add_argument("--only", choices=["tests", "training", "layers"], action="append",
                        help="run only this stage (repeatable); the environment always runs")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="skip the stages that would start after this many seconds "
                        "(default 450)")
    args = parser.parse_args(argv)
    updates = args.updates or (2 if args.dry_run else 25)
    if updates < 2:
        parser.error("--updates must be at least 2 (the first is untimed)")
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch "
              f"{torch.__version__}; on a CPU run it with --dry-run", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.budget_s)
    check.result.update(dry_run=args.dry_run, updates=updates, argv=sys.argv[1:])
    plan(check, args.dry_run, updates)
    stages = set(args.only or ["tests", "training", "layers"])

    check.stage("environment", stage_environment, device, args.dry_run)
    env = check.result["stages"]["environment"]
    if env["status"] != "ok":
        return 1
    peak, peak_source = peak_tflops(env)
    if "tests" in stages:
        remaining = max(30.0, args.budget_s - check.elapsed_s() - 180)
        check.stage("tests", stage_tests, args.dry_run, min(300.0, remaining))
    if "training" in stages:
        check.stage("training", stage_training, device, args.dry_run, updates, peak, peak_source)
    if "layers" in stages:
        check.stage("layers", stage_layers, device, args.dry_run, peak)
    statuses = {name: s["status"] for name, s in check.result["stages"].items()}
    check.say(f"stages: {statuses}; {check.elapsed_s():.0f} s; files in {args.out}")
    check.save()
    return 0 if all(s == "ok" for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
