"""benchmarks/gpu_check.py, the one-shot GPU check, runs every stage in its CPU dry run, so it
cannot rot between the rare days a GPU is lent."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """(exit status, output folder) of `gpu_check.py --dry-run`, run in this process (its tests
    stage starts pytest in a child, as on the GPU)."""
    out = tmp_path_factory.mktemp("gpu_check")
    return _gpu_check_module().main(["--dry-run", "--out", str(out)]), out


@pytest.mark.slow
def test_dry_run_passes_every_stage_and_writes_one_json_and_one_table(dry_run):
    status, out = dry_run
    result = json.loads((out / "gpu_check.json").read_text())
    assert status == 0, json.dumps(result, indent=1)[-3000:]
    assert result["dry_run"] is True
    assert {name: s["status"] for name, s in result["stages"].items()} == {
        "environment": "ok", "tests": "ok", "training": "ok", "layers": "ok"}
    table = (out / "gpu_check.txt").read_text()
    for heading in ("tokens/s", "MFU", "peak GiB", "val loss", "syncs/update", "fwd+bwd ms"):
        assert heading in table
    assert "tests collected" in result["stages"]["tests"]["summary"]


def test_dry_run_trains_under_each_precision_the_cpu_has_and_says_why_not_fp16(dry_run):
    runs = json.loads((dry_run[1] / "gpu_check.json").read_text())["stages"]["training"]["runs"]
    assert "needs CUDA" in runs["fp16"]["skipped"]
    for precision in ("bf16", "fp32"):
        run = runs[precision]
        assert run["tokens_per_s"] > 0 and 0 < run["mfu"]
        assert 3.0 < run["train_loss_last_update"] < 6.0 and 3.0 < run["val_loss"] < 6.0
        assert run["expert_kernel"] == "cpu" and run["grad_scaler"] is False


def test_dry_run_layer_table_has_every_expert_kernel_and_says_why_mixtral_is_missing(dry_run):
    layers = json.loads((dry_run[1] / "gpu_check.json").read_text())["stages"]["layers"]
    names = {row["impl"] for row in layers["rows"]}
    assert {"ours (fast path)", "ours (grouped_mm)", "ours (padded_bmm)",
            "ours (reference loop)", "naive (mask per expert)"} <= names
    if importlib.util.find_spec("transformers") is None:
        assert "transformers is not installed" in layers["mixtral_skipped"]
    else:
        assert any(name.startswith("Mixtral") for name in names)


def test_mfu_is_measured_against_the_datasheet_bf16_peak_of_known_gpus():
    gpu_check = _gpu_check_module()
    assert gpu_check.datasheet_bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_check.datasheet_bf16_peak("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.datasheet_bf16_peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.datasheet_bf16_peak("NVIDIA L4") == 121.0
    assert gpu_check.datasheet_bf16_peak("Quadro RTX 8000") is None
    assert gpu_check.peak_tflops({"bf16_peak_tflops_datasheet": None,
                                  "bf16_matmul_tflops_measured": 700.0})[0] == 700.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without")
def test_without_a_gpu_it_says_to_use_the_dry_run(tmp_path, capsys):
    assert _gpu_check_module().main(["--out", str(tmp_path)]) == 2
    assert "--dry-run" in capsys.readouterr().err
