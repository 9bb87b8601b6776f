"""A local ``mlflow server`` for as long as a ``with`` block: the browser check's, the outage
tests' and the screenshot tool's server (tests/test_mlflow_server_e2e.py,
tests/test_tracking_outage_e2e.py, tools/screenshots.py).

127.0.0.1 only, a free port, one worker (the default four did not answer on 2 cores), no job
runner (MLflow 3.17 otherwise starts seven huey consumers for GenAI jobs this project never
submits), and always stopped on the way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from clear_ray.net import free_port

START_TIMEOUT_S = 120.0


@contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, port: int = 0) -> Iterator[str]:
    """Serve ``backend_store_uri`` (proxying artifacts to ``artifacts``) on ``port`` (0: a free
    one; the same port again: a restarted server, as a search sees it); yields its URL."""
    port = port or free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    # A session of its own: `mlflow server` runs uvicorn as a child, stopped with it by group.
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"mlflow server on {url} did not start") from None
                time.sleep(1)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever of it is left."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
