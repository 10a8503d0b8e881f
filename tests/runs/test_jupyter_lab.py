"""JupyterLab for real: the server `make lab` starts serves the Lab UI, and the training notebook
runs in a kernel opened through the server's REST and websocket API (what the browser does).
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import websocket
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from moe_core import paths

REPO = paths.CHECKOUT
TRAIN_NOTEBOOK = "notebooks/train_experiment.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`jupyter lab` (the command of `make lab`) on a loopback port; yields (base url, token)."""
    home = tmp_path_factory.mktemp("jupyter")
    port, token = free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI containers run as root
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"{url}/api/status", params={"token": token}, timeout=5).ok:
                break
        except requests.ConnectionError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"jupyter lab did not start:\n{server.stdout.read()[-3000:]}")
        time.sleep(0.5)
    yield url, token
    requests.post(f"{url}/api/shutdown", params={"token": token}, timeout=10)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


class KernelChannel:
    """The kernel's websocket, speaking the Jupyter message protocol as JupyterLab does."""

    def __init__(self, url: str, token: str, kernel_id: str):
        self.session = uuid.uuid4().hex
        ws_url = url.replace("http", "ws", 1)
        self.ws = websocket.create_connection(
            f"{ws_url}/api/kernels/{kernel_id}/channels?session_id={self.session}"
            f"&token={token}", timeout=300)

    def execute(self, code: str) -> tuple[dict, list[dict], list[str]]:
        """Run one cell: (execute_reply content, its outputs, the msg_types on iopub)."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": self.session, "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        reply, outputs, seen, idle = None, [], [], False
        while reply is None or not idle:
            frame = self.ws.recv()
            if isinstance(frame, bytes):  # a message with binary buffers (none we need)
                continue
            msg = json.loads(frame)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                reply = msg["content"]
            elif msg["channel"] == "iopub":
                seen.append(kind)
                if kind in ("stream", "display_data", "execute_result", "error"):
                    outputs.append({"output_type": kind, **msg["content"]})
                idle = kind == "status" and msg["content"]["execution_state"] == "idle"
        return reply, outputs, seen

    def close(self):
        self.ws.close()


@pytest.mark.slow
def test_jupyter_lab_serves_the_lab_ui_with_this_environments_kernel(lab):
    url, token = lab
    page = requests.get(f"{url}/lab", params={"token": token}, timeout=30)
    assert page.ok and "<title>JupyterLab</title>" in page.text
    specs = requests.get(f"{url}/api/kernelspecs", params={"token": token}, timeout=30).json()
    assert "python3" in specs["kernelspecs"]


@pytest.mark.slow
def test_training_notebook_runs_in_a_kernel_opened_through_the_server(lab, tmp_path):
    url, token = lab
    auth = {"Authorization": f"token {token}"}
    session = requests.post(f"{url}/api/sessions", headers=auth, timeout=60, json={
        "path": TRAIN_NOTEBOOK, "type": "notebook", "name": "",
        "kernel": {"name": "python3"}}).json()
    kernel_id = session["kernel"]["id"]
    run_dir = tmp_path / "run"
    nb = parameterize_notebook(load_notebook_node(str(REPO / TRAIN_NOTEBOOK)), {
        "preset": "smoke", "out_dir": str(run_dir), "threads": 1,
        "overrides": {"max_steps": 8}})
    channel = KernelChannel(url, token, kernel_id)
    try:
        # the server's kernel runs this environment's Python, which holds moe_core
        reply, outputs, _ = channel.execute("import sys; print(sys.prefix)")
        assert outputs[0]["text"].strip() == sys.prefix
        training = None
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            reply, outputs, seen = channel.execute(cell.source)
            errors = [o for o in outputs if o["output_type"] == "error"]
            assert reply["status"] == "ok", f"cell {index}: {errors}"
            if "metrics = train(" in cell.source:
                training = outputs, seen
    finally:
        channel.close()
        requests.delete(f"{url}/api/sessions/{session['id']}", headers=auth, timeout=60)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["status"], metrics["actual_steps"]) == ("completed", 8)
    assert (run_dir / "metrics_plot.png").stat().st_size > 0
    # progress is tqdm's notebook widget (ipywidgets), not text on stderr
    outputs, seen = training
    assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs)
    assert "comm_open" in seen
    assert not [o for o in outputs if o.get("name") == "stderr"]
    kernels = requests.get(f"{url}/api/kernels", headers=auth, timeout=30).json()
    assert kernel_id not in [k["id"] for k in kernels]  # the session's kernel is shut down
