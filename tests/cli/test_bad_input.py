"""A suite survives bad input and interruption: each mistake a new user can make is refused with
our error naming the file, key or value and what to do, and goes no further than it must; a
killed run or kernel resumes from its last checkpoint; nothing half-written reads as done."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
from suite_helpers import SMOKE, metrics, suite_cli, suite_process, wait_for

from moe_core import paths
from moe_core.analysis.results import load_runs
from moe_core.cli import suite as suite_cli_module
from moe_core.cli import train as train_cli
from moe_core.config import catalog
from moe_core.config.run_config import PARAMETERS_DIR, ConfigError, build_config
from moe_core.runs import executors, runner, suite
from moe_core.training.checkpoint import CHECKPOINT_FILE
from moe_core.training.trainer import train

TINY = {"max_steps": 8, "eval_every": 4}
NOTEBOOK = runner.TRAIN_NOTEBOOK.name


def run_train_cli(capsys, *args):
    code = train_cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    """Exit status 2, our one-line message with every fragment, no traceback."""
    assert code == 2, err
    assert "error: " in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def wait_for_first_checkpoint(run_dir: Path, process: subprocess.Popen,
                              timeout_s: float = 240) -> None:
    """Until the run has a checkpoint and metrics.json records an eval."""
    wait_for(run_dir, process, lambda m: (run_dir / CHECKPOINT_FILE).exists() and m["evals"],
             "a checkpoint", timeout_s)


# ---------------------------------------------------------------- mistakes in what is asked


def test_an_unknown_experiment_name_is_refused_with_a_did_you_mean(capsys, tmp_path):
    code, _, err = run_train_cli(capsys, "-e", "basline", "-p", "smoke", "--out", tmp_path / "r")
    assert_user_error(code, err, "unknown experiment 'basline'", "did you mean 'baseline'?",
                      "available:")
    code, _, err = suite_cli(capsys, "run", "-e", "no_lb", "lowr_lb_weight",
                             "--out", tmp_path / "s", *SMOKE)
    assert_user_error(code, err, "did you mean 'lower_lb_weight'?")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


@pytest.fixture
def parameters(tmp_path) -> Path:
    """A copy of parameters/ a user can break without touching the repository's."""
    shutil.copytree(PARAMETERS_DIR, tmp_path / "parameters")
    return tmp_path / "parameters"


def test_malformed_yaml_names_the_file_and_line_before_any_run(parameters):
    (parameters / "experiments" / "mine.yaml").write_text(
        "description: my experiment\ndropout: 0.2\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: malformed YAML at line 3"):
        catalog.resolve_experiments(["baseline", "mine"], parameters_dir=parameters)
    (parameters / "suites.yaml").write_text("quick: [baseline, no_lb\n")
    with pytest.raises(ConfigError, match=r"suites\.yaml: malformed YAML at line \d+"):
        catalog.resolve_experiments(suite="quick", parameters_dir=parameters)


def test_an_unknown_key_names_its_file_or_the_override_and_the_likely_key(parameters, capsys,
                                                                          tmp_path):
    (parameters / "experiments" / "mine.yaml").write_text(
        "description: my experiment\nwarmup_ration: 0.1\n")
    with pytest.raises(ConfigError) as raised:
        build_config("mine", "smoke", parameters_dir=parameters)
    assert "mine.yaml: unknown key 'warmup_ration'; did you mean 'warmup_ratio'?" \
        in str(raised.value)
    code, _, err = run_train_cli(capsys, "-e", "baseline", "-p", "smoke", "--out", tmp_path,
                                 "--set", "num_expert=4")
    assert_user_error(code, err, "overrides: unknown key 'num_expert'",
                      "did you mean 'num_experts'?")


def test_a_wrong_type_names_the_key_the_value_and_the_type_expected(capsys, tmp_path):
    out = tmp_path / "runs"
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", out, *SMOKE,
                             "--set", "batch_size=eight")
    assert_user_error(code, err, "overrides: key 'batch_size' = 'eight': expected an integer")
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", out, *SMOKE,
                             "--set", "early_stopping=maybe")
    assert_user_error(code, err, "key 'early_stopping' = 'maybe': expected true or false")
    assert not out.exists()


def test_a_seq_len_above_what_the_model_allows_names_max_seq_len(capsys, tmp_path):
    out = tmp_path / "runs"
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "short_run", "--out", out,
                             *SMOKE, "--set", "seq_len=64")
    assert_user_error(code, err, "key 'seq_len' = 64: must be <= max_seq_len (32)")
    assert not out.exists()


def test_an_output_folder_that_cannot_be_written_says_to_choose_another(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder cannot be made under a file, even by root
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", blocker / "runs",
                             *SMOKE)
    assert_user_error(code, err, f"suite folder {blocker / 'runs'} cannot be written",
                      "choose another with --out")
    code, _, err = run_train_cli(capsys, "-e", "baseline", "-p", "smoke",
                                 "--out", blocker / "run")
    assert_user_error(code, err, f"output folder {blocker / 'run'} cannot be written")


# ---------------------------------------------------------------- mistakes in the data


def test_a_data_path_that_does_not_exist_fails_the_suite_before_any_run(capsys, tmp_path):
    missing = tmp_path / "corpus"
    local = ["--set", "data_source=local", "--set", f"data_path={missing}",
             "--set", "vocab_size=300"]
    out = tmp_path / "runs"
    code, stdout, err = suite_cli(capsys, "run", "-e", "baseline", "no_lb", "--out", out,
                                  *SMOKE, *local)
    assert_user_error(code, err, f"data_path = '{missing}'", "does not exist",
                      "give a file or folder of .txt")
    assert stdout == "" and not out.exists()
    code, _, err = run_train_cli(capsys, "-e", "baseline", "-p", "smoke",
                                 "--out", tmp_path / "one", *local)
    assert_user_error(code, err, f"data_path = '{missing}'", "does not exist")


@pytest.mark.slow
def test_an_empty_corpus_is_named_and_no_run_starts_training(capsys, tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n   \n\n")
    code, _, err = run_train_cli(capsys, "-e", "baseline", "-p", "smoke", "--out", tmp_path / "r",
                                 "--set", "data_source=local", "--set", f"data_path={corpus}",
                                 "--set", "vocab_size=300")
    assert_user_error(code, err, f"{corpus} contains no non-empty documents")
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_a_corpus_smaller_than_one_window_says_how_many_tokens_seq_len_needs(capsys, tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n\n".join(f"note {i}" for i in range(10)))
    code, _, err = run_train_cli(capsys, "-e", "baseline", "-p", "smoke", "--out", tmp_path / "r",
                                 "--set", "data_source=local", "--set", f"data_path={corpus}",
                                 "--set", "vocab_size=300", "--set", "num_documents=10")
    assert_user_error(code, err, "one window of seq_len = 32 needs 33",
                      "lower seq_len or raise num_documents")


# ---------------------------------------------------------------- runs that go wrong


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """baseline and short_run trained with the suite's SMOKE config, as a suite leaves them."""
    out = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in ("baseline", "short_run"):
        train(build_config(name, "smoke", TINY), seed=0, out_dir=out / name / "seed0",
              progress=False)
    torch.set_num_threads(threads)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("content, complaint", [
    ('{"status": "compl', "not valid JSON"),  # as a full disk or a crash mid-copy leaves it
    ("", "not valid JSON"),  # an empty file: a copy that never started
    ("[]", "holds a JSON list, not the object of a run's metrics"),
])
def test_a_corrupted_metrics_json_is_listed_unreadable_while_the_rest_render_and_run(
        trained, tmp_path, capsys, content, complaint):
    out = tmp_path / "runs"
    shutil.copytree(trained, out)
    corrupted = out / "short_run" / "seed0" / "metrics.json"
    corrupted.write_text(content)
    code, stdout, _ = suite_cli(capsys, "view", "--out", out)
    assert code == 0
    rows = {line.split()[0]: line for line in stdout.splitlines()[1:]}
    assert "completed" in rows["baseline"] and "unreadable" in rows["short_run"]
    code, stdout, err = suite_cli(capsys, "run", "-e", "baseline", "short_run",
                                  "--out", out, *SMOKE)
    assert code == 1 and "Traceback" not in err
    assert "baseline seed0: skipped" in stdout
    assert f"FAILED short_run seed0: {corrupted}: {complaint}" in stdout
    assert "delete it to rerun the run" in stdout
    assert corrupted.read_text() == content  # left for the user to look at


def raise_for_no_lb(batch: runner.RunBatch) -> list[runner.RunOutcome]:
    if batch.specs[0].experiment == "no_lb":
        raise KeyError("a bug")
    return [runner.RunOutcome(spec.experiment, spec.seed, spec.run_dir, "ran", "completed")
            for spec in batch.specs]


def test_a_run_whose_execution_raises_fails_alone_and_the_others_finish(tmp_path):
    batches = runner.batch_runs(runner.plan_runs(["baseline", "no_lb", "short_run"], [0, 1],
                                                 "smoke", out_dir=tmp_path), slots=2)
    outcomes = list(executors.LocalExecutor(2).map(raise_for_no_lb, batches))
    failed = [o for o in outcomes if o.experiment == "no_lb"]
    # every run of the batch that raised is failed, each with the error; the others finish
    assert [(o.seed, o.status, o.error) for o in sorted(failed, key=lambda o: o.seed)] == [
        (0, "failed", "KeyError: 'a bug'"), (1, "failed", "KeyError: 'a bug'")]
    assert len(outcomes) == 6 and all(o.ok for o in outcomes if o.experiment != "no_lb")


def test_a_diverging_run_is_recorded_diverged_saying_when_and_what_to_change(tmp_path,
                                                                             one_thread):
    # a huge LR leaves the weights non-finite after an update while every train loss was finite
    cfg = build_config("baseline", "smoke", {**TINY, "lr": 1e6, "grad_clip": 1e9})
    recorded = train(cfg, seed=0, out_dir=tmp_path / "baseline" / "seed0", progress=False)
    assert recorded["status"] == "diverged" and recorded["diverged_at_step"] == 8
    assert recorded["error"] == ("the loss became NaN or infinite by step 8; lower lr (now "
                                 "1000000.0) or raise warmup_ratio, then run again")
    row = load_runs(tmp_path).runs.iloc[0]
    assert row["status"] == "diverged" and row["error"] == recorded["error"]
    [spec] = runner.plan_runs(["baseline"], [0], "smoke", {**TINY, "lr": 1e6, "grad_clip": 1e9},
                             out_dir=tmp_path)
    outcome = runner._outcome(spec, "ran", recorded)
    summary = suite.SuiteResult(tmp_path, [outcome]).summary()
    assert f"FAILED baseline seed0: status diverged: {recorded['error']}" in summary


def killer_notebook(folder: Path) -> Path:
    """The training notebook, plus a cell that SIGKILLs the kernel of the experiment named by
    $KILL_KERNEL_OF as soon as its first run's first checkpoint is written: a kernel that
    dies mid-run."""
    nb = nbformat.read(runner.TRAIN_NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
        "import os, pathlib, signal, threading, time\n"
        "def _die_after_first_checkpoint(path):\n"
        "    while not path.exists():\n"
        "        time.sleep(0.01)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "if experiment == os.environ.get('KILL_KERNEL_OF'):\n"
        "    run_dir = pathlib.Path(out_dir) / (f'seed{seeds[0]}' if seeds else '')\n"
        f"    path = run_dir / '{CHECKPOINT_FILE}'\n"
        "    threading.Thread(target=_die_after_first_checkpoint, args=(path,),"
        " daemon=True).start()\n"))
    path = folder / NOTEBOOK
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_kernel_killed_mid_run_fails_that_run_only_and_the_next_suite_resumes_it(
        capsys, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    notebook = killer_notebook(tmp_path)
    # checkpoints at steps 8, 16, ...: the kernel dies soon after step 8
    args = ["run", "-e", "baseline", "short_run", "--out", out, "--notebook", notebook,
            "--preset", "smoke", "--set", "max_steps=40", "--set", "eval_every=4",
            "--no-report"]
    monkeypatch.setenv("KILL_KERNEL_OF", "baseline")
    code, stdout, err = suite_cli(capsys, *args)
    assert code == 1 and "Traceback" not in err
    killed = metrics(out / "baseline" / "seed0")
    assert killed["status"] == "failed"
    assert killed["error"].startswith("the notebook's kernel died (killed by SIGKILL")
    assert "run the suite again to resume from the last checkpoint" in killed["error"]
    assert f"FAILED baseline seed0: {killed['error']}" in stdout
    assert metrics(out / "short_run" / "seed0")["status"] == "completed"  # the suite went on
    assert not (out / "baseline" / "seed0" / runner.HOLDER_FILE).exists()

    monkeypatch.delenv("KILL_KERNEL_OF")
    code, stdout, _ = suite_cli(capsys, *args)
    assert code == 0 and "short_run seed0: skipped" in stdout and "1 ran, 1 skipped" in stdout
    resumed = metrics(out / "baseline" / "seed0")
    assert resumed["status"] == "completed" and resumed["actual_steps"] == 40
    # the eval before the checkpoint comes back from it, wall-clock time and all: resumed,
    # not retrained
    assert resumed["evals"][0] == killed["evals"][0]


def train_process(out: Path, *overrides: str) -> subprocess.Popen:
    """`moe-train` in its own process (output in <out>.log), on one thread so that every
    run sums in the same order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".log"), "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "moe_core.cli.train", "-e", "baseline", "-p", "smoke",
             "--seed", "1", "--out", str(out), *overrides], cwd=paths.CHECKOUT,
            stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_a_train_process_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(
        tmp_path):
    overrides = ["--set", "max_steps=120", "--set", "eval_every=10",
                 "--set", "checkpoint_every_evals=1"]
    uninterrupted = train_process(tmp_path / "whole", *overrides)
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()

    killed = train_process(tmp_path / "killed", *overrides)
    wait_for_first_checkpoint(tmp_path / "killed", killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    partial = metrics(tmp_path / "killed")
    assert partial["status"] == "running" and partial["actual_steps"] < 120  # not complete

    resumed = train_process(tmp_path / "killed", *overrides)
    assert resumed.wait(timeout=300) == 0, (tmp_path / "killed.log").read_text()
    whole, again = metrics(tmp_path / "whole"), metrics(tmp_path / "killed")
    assert again["status"] == "completed"
    assert again["evals"][0]["elapsed_s"] == partial["evals"][0]["elapsed_s"]  # resumed
    assert again["history"]["val_losses"] == whole["history"]["val_losses"]
    assert [e["train_loss"] for e in again["evals"]] == [e["train_loss"] for e in whole["evals"]]


@pytest.mark.slow
def test_sigterm_stops_the_suite_like_ctrl_c_recording_interrupted_and_exiting_143(tmp_path):
    out = tmp_path / "runs"
    run_dir = out / "baseline" / "seed0"
    process = suite_process("run", "-e", "baseline", "--out", out, "--preset", "smoke",
                            "--set", "max_steps=20000", "--set", "eval_every=4", "--no-report")
    wait_for_first_checkpoint(run_dir, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "run the same command again" in err and "Traceback" not in err
    recorded = metrics(run_dir)
    assert recorded["status"] == "interrupted" and 8 <= recorded["actual_steps"] < 20000
    assert not (run_dir / runner.HOLDER_FILE).exists()


def test_moe_train_reports_a_run_that_diverged_before_its_first_evaluation(
        capsys, tmp_path, one_thread):
    out = tmp_path / "run"
    code = train_cli.main(["-e", "baseline", "-p", "smoke", "--out", str(out),
                           *[a for k, v in {**TINY, "fault_nan_at_step": 2}.items()
                             for a in ("--set", f"{k}={v}")]])
    printed = capsys.readouterr().out
    assert code == 1
    assert "diverged" in printed and "no evaluation finished" in printed
    assert "the loss became NaN at step 2, as fault_nan_at_step = 2 asks" in printed
    assert json.loads((out / "metrics.json").read_text())["status"] == "diverged"


# ---------------------------------------------------------------- odd values, names and folders


@pytest.mark.parametrize("override, complaint", [
    ("lr=nan", "expected a number"), ("lr=inf", "expected a number"), ("lr=-1", "must be > 0"),
    ("max_steps=1e30", "expected an integer"), ("dropout=1.5", "dropout"),
])
def test_non_finite_negative_and_out_of_range_values_are_refused_naming_the_key(
        override, complaint, capsys, tmp_path):
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", tmp_path / "r",
                             *SMOKE, "--set", override)  # after SMOKE's own max_steps
    assert_user_error(code, err, f"'{override.split('=')[0]}'", complaint)


def test_a_model_too_large_for_this_machine_is_refused_before_any_run(capsys, tmp_path):
    code, _, err = suite_cli(capsys, "run", "-e", "baseline", "--out", tmp_path / "r",
                             "--set", "d_model=100000000", *SMOKE)
    assert_user_error(code, err, "d_model 100000000", "parameters", "GiB", "lower those keys")
    assert not (tmp_path / "r").exists()


def test_parameter_count_is_the_count_of_the_model_built():
    from moe_core.model.transformer import MoEModel

    for preset, overrides in (("smoke", {}), ("cpu", {"num_experts": 4, "d_ff": 96})):
        cfg = build_config("baseline", preset, overrides)
        assert cfg.parameter_count == sum(p.numel() for p in MoEModel(cfg).parameters())


@pytest.mark.slow
def test_non_finite_losses_in_a_metrics_json_are_read_and_shown_not_dropped(
        trained, tmp_path, capsys):
    out = tmp_path / "runs"
    shutil.copytree(trained, out)
    path = out / "baseline" / "seed0" / "metrics.json"
    record = json.loads(path.read_text())
    record["history"]["val_losses"][0] = float("nan")
    record["final_metrics"]["val_loss"] = float("inf")
    path.write_text(json.dumps(record))  # Python writes NaN and Infinity, as json allows
    code, stdout, err = suite_cli(capsys, "view", "--out", out)
    assert code == 0 and "Traceback" not in err
    row = next(line for line in stdout.splitlines() if line.split()[0] == "baseline")
    assert "inf" in row and "completed" in row


@pytest.mark.slow
def test_a_run_folder_in_a_symlink_loop_is_not_followed_forever(trained, tmp_path, capsys):
    out = tmp_path / "runs"
    shutil.copytree(trained, out)
    (out / "loop").symlink_to(out, target_is_directory=True)
    (out / "self").symlink_to(out / "self")  # a link to itself
    code, stdout, err = suite_cli(capsys, "view", "--out", out)
    assert code == 0 and "Traceback" not in err
    assert [line.split()[0] for line in stdout.splitlines()[1:]] == ["baseline", "short_run"]


@pytest.mark.slow
def test_folders_with_spaces_and_non_ascii_names_run_and_report(tmp_path, capsys,
                                                                 monkeypatch):
    out = tmp_path / "my runs" / "ünï cödé ✓"
    code, stdout, err = suite_cli(capsys, "run", "-e", "baseline", "--out", out, *SMOKE)
    assert code == 0, err
    assert metrics(out / "baseline" / "seed0")["status"] == "completed"
    monkeypatch.chdir(tmp_path / "my runs")
    code, stdout, err = suite_cli(capsys, "report", "--out", "ünï cödé ✓", "--html", "r é.html")
    assert code == 0, err
    written = tmp_path / "my runs" / "r é.html"
    assert stdout.strip() == str(written) and written.is_file()


@pytest.mark.slow
def test_report_writes_relative_to_the_current_folder_by_default(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = suite_cli(capsys, "report", "--out", ".")
    assert code == 0, err
    written = tmp_path / "reports" / "inflection_report.html"
    assert written.is_file() and stdout.strip() == str(written)
    with pytest.raises(SystemExit):
        suite_cli_module.build_parser().parse_args(["report", "--help"])
    assert "reports/inflection_report.html in the current folder" in \
        " ".join(capsys.readouterr().out.split())


def wait_until_a_kernel_runs(process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Until the process has started the report's kernel (a child process), then 2 s more:
    the interrupt lands while the notebook executes, not while Python imports."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while not psutil.Process(process.pid).children(recursive=True):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2)


@pytest.mark.slow
def test_an_interrupted_report_leaves_the_earlier_report_as_it_was(trained, tmp_path):
    html = tmp_path / "report.html"
    html.write_text("the earlier report")
    process = subprocess.Popen(
        [sys.executable, "-m", "moe_core.cli.suite", "report", "--out", str(trained), "--html",
         str(html)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_until_a_kernel_runs(process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "report interrupted" in err and "Traceback" not in err
    assert html.read_text() == "the earlier report"
