"""Every command of docs/own-data.md's walk-through (train -> embed -> index -> search ->
show -> tsne -> export -> serve, and the Python client) runs as written on a small folder of
tracklets."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_inference import _write_folder, _write_labelled

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own-data.md"


def walkthrough() -> tuple[list[str], str]:
    """The commands of the first ``bash`` block after "## The whole path" (continuation
    lines joined) and the first ``python`` block after it."""
    text = DOC.read_text()
    section = text[text.index("## The whole path"):]
    section = section[:section.index("\n## ", 5)]
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [c.strip() for c in bash.replace("\\\n", " ").splitlines() if c.strip()]
    client = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return commands, client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "xreid":
        return [sys.executable, "-m", "xreid", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *[str(ROOT / w) if w.startswith("examples/") else w
                                  for w in words[1:]]]
    raise AssertionError(f"unexpected command in {DOC.name}: {command}")


def test_walkthrough_names_every_step():
    commands, client = walkthrough()
    steps = [" ".join(shlex.split(c)[:2]) for c in commands]
    assert steps == ["python examples/train_vvi.py", "xreid embed", "xreid embed",
                     "xreid index", "xreid search", "xreid search", "xreid search",
                     "xreid show", "xreid tsne", "xreid export", "xreid serve"]
    assert "requests.post" in client


@pytest.mark.slow
def test_every_walkthrough_command_runs(tmp_path):
    pytest.importorskip("requests")
    pytest.importorskip("faiss")
    commands, client = walkthrough()
    _write_labelled(tmp_path / "own")
    (tmp_path / "cams").mkdir()
    _write_folder(tmp_path / "cams" / "infrared", 1)
    _write_folder(tmp_path / "cams" / "visible", 0)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    port = _free_port()
    for command in commands[:-1]:
        r = subprocess.run(_argv(command), cwd=tmp_path, capture_output=True, text=True,
                           env=env, timeout=600)
        assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
        out = shlex.split(command)
        if "-o" in out:
            assert (tmp_path / out[out.index("-o") + 1]).is_file(), command
    serve = commands[-1].replace("--port 8765", f"--port {port}")
    server = subprocess.Popen(_argv(serve), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line + server.stderr.read()
        code = client.replace("8765", str(port))
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "'rank': 1" in r.stdout and "'distance'" in r.stdout
    finally:
        server.terminate()
        deadline = time.monotonic() + 10
        while server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if server.poll() is None:
            server.kill()
        server.communicate()
