"""A search killed with SIGKILL and resumed, three times over beside a CPU burner, reaches its
end every time.

Each trial is stopped by ASHA at its last epoch (Tune ends the trial actor while ``fit()`` runs,
so its Train controller dies before removing its worker group). A resumed search runs the
unpickled copy of the group reaper saved when it began (runtime/cleanup.py), so the groups of
its last trials used to stay CREATED, and the final evaluation waited for their CPUs for ever.
The start bound (``search.worker_start_timeout_s``) is lowered so that a regression fails in
minutes with its one line instead of hanging.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

SAMPLES = 3
CYCLES = 3


def tune_command(output: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "clear_ray.tune", "--output-dir", str(output), *args]


@pytest.fixture
def cpu_burner():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    burner.kill()
    burner.wait()


def start_and_kill_after_first_trial(output: Path, experiment: str) -> str:
    """Starts a search, SIGKILLs its driver once one trial has finished; returns its name."""
    command = tune_command(
        output, "--method", "ga", "--num-samples", str(SAMPLES), "--epochs", "1",
        "--confirm-seeds", "0", "--robustness", "none", "--experiment", experiment,
        "--set", "eval.generate=false", "--set", "search.worker_start_timeout_s=120", *SESSION_SET,
    )  # fmt: skip
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    name, tail = None, []
    for line in driver.stderr:
        tail.append(line)
        found = re.search(r"search (\S+): files in", line)
        name = found.group(1) if found else name
        if re.search(rf"\[search\] 1/{SAMPLES} trials done", line):
            break
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    assert name and any("trials done" in line for line in tail), "".join(tail[-40:])
    return name


def test_a_killed_search_resumes_to_its_end_every_time(
    session_output: Path, synthetic_source: str, cpu_burner
) -> None:
    for cycle in range(CYCLES):
        name = start_and_kill_after_first_trial(session_output, f"hang-{cycle}")
        resumed = subprocess.run(
            tune_command(session_output, "--resume", name),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert resumed.returncode == 0, f"cycle {cycle}: {resumed.stderr[-3000:]}"
        assert "full evaluation of the best trial" in resumed.stderr
        assert "could not start" not in resumed.stderr
        trials = (session_output / "searches" / name / "ga" / "trials.csv").read_text()
        assert trials.count("\n") == SAMPLES + 1, trials
