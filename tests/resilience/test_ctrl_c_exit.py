"""Ctrl-C on a serving `make run`: uvicorn's graceful shutdown, then the prompt back at once. Python's
finalisation ran full garbage collections over the heap the process had built (every library imported,
the models, the catalog): 1.5-2.1 s of CPU after uvicorn's last line on the tiny demo, 5-11 s of wall
time on the busy 2-core machine, nothing printed (docs/operations.md). Now 0.2 s of CPU, under 1.1 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow  # a tiny demo (~30 s of CPU), then the API's start-up and warm-up

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(18990, 19000)
# Ctrl-C as in a terminal, not a background job (which ignores SIGINT)
RUN = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
from crosscart.cli import app
app()
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_ctrl_c_on_the_serving_demo_gives_the_prompt_back_at_once(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("CROSSCART_")}
    env.update(PYTHONPATH=str(ROOT), CROSSCART_DATA_DIR=str(tmp_path / "var"))
    command = [sys.executable, "-c", RUN, "demo", "--scale", "tiny"]
    built = subprocess.run([*command, "--no-serve"], env=env, cwd=tmp_path, capture_output=True, timeout=900)
    assert built.returncode == 0, built.stderr

    port = free_port(PORTS)
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [*command, "--port", str(port)], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 600
    while True:  # the champion loaded and warmed up: the heap `make run` holds while it serves
        assert demo.poll() is None and time.monotonic() < deadline, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as ready:
                if ready.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.5)

    cpu_before = _cpu_seconds(demo.pid)
    sent = time.monotonic()
    demo.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(demo.pid, 0)
    seconds = time.monotonic() - sent
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    demo.returncode = os.waitstatus_to_exitcode(status)

    said = log.read_text()
    assert demo.returncode == 0, said  # uvicorn takes Ctrl-C for the way to stop
    assert "Application shutdown complete" in said and "Traceback" not in said
    assert cpu < 0.9, f"{cpu:.2f} s of CPU between Ctrl-C and the exit (was 1.5-2.1)"
    assert seconds < 4, f"{seconds:.1f} s between Ctrl-C and the exit (was 5-11 on the busy machine)"
