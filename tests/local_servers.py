"""A command that serves HTTP on 127.0.0.1, for as long as a ``with`` block (the tests that
check `mlflow models serve` and optuna-dashboard over HTTP)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from clear_ray.mlflow_server import stop


@contextmanager
def serving(
    command: Sequence[str],
    probe: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 300.0,
) -> Iterator[None]:
    """Start ``command`` in a session of its own (stopped by group on the way out, children
    included) and wait until ``probe`` answers 200; its output goes to ``log``, which a
    start that fails quotes."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    tail = log.read_text()[-3000:]
                    raise RuntimeError(f"{command[:4]} did not answer {probe}:\n{tail}") from None
                time.sleep(1)
        yield
    finally:
        stop(process)
