"""The papermill kernel: this environment's Python."""

import json
import sys

from jupyter_client.kernelspec import KernelSpecManager

from moe_core.runs import jupyter_kernel


def test_kernel_runs_the_suites_own_python():
    name = jupyter_kernel.kernel_for_this_python()
    argv = KernelSpecManager().get_kernel_spec(name).argv
    assert jupyter_kernel._runs_this_python(argv)


def test_a_python3_kernel_of_another_environment_is_replaced_by_one_for_this_python(tmp_path):
    foreign = tmp_path / "user" / "kernels" / "python3"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps({
        "argv": ["/opt/other-env/bin/python", "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"], "display_name": "other", "language": "python"}))
    prefix = tmp_path / "prefix"
    ksm = KernelSpecManager(kernel_dirs=[str(foreign.parent),
                                         str(prefix / "share" / "jupyter" / "kernels")])
    name = jupyter_kernel.find_or_install_kernel(ksm, install_prefix=str(prefix))
    assert name.startswith("moe-core-")
    assert ksm.get_kernel_spec(name).argv[0] == sys.executable
    # found now
    assert jupyter_kernel.find_or_install_kernel(ksm, install_prefix=str(prefix)) == name


def test_a_kernel_slow_to_start_is_given_minutes_not_papermills_minute(monkeypatch, tmp_path):
    """papermill's 60 s start timeout failed a run whose kernel started beside another kernel
    and a test session on 2 busy cores: a slow start is not a failed run."""
    import papermill

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **kw: seen.update(kw))
    jupyter_kernel.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {})
    assert seen["start_timeout"] == jupyter_kernel.KERNEL_START_TIMEOUT_S >= 300
