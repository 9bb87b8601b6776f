"""A trial worker imports DeepSpeed without MLflow (~1 s of start-up), and MLflow still works."""

from __future__ import annotations

import subprocess
import sys

FRESH_WORKER = """
import sys
from clear_ray.train.deepspeed import import_deepspeed
deepspeed = import_deepspeed()
assert callable(deepspeed.initialize)
assert "mlflow" not in sys.modules, "DeepSpeed's import pulled in MLflow"
import mlflow
assert mlflow.__version__
"""


def test_deepspeed_is_imported_without_mlflow_which_stays_importable() -> None:
    run = subprocess.run([sys.executable, "-c", FRESH_WORKER], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
