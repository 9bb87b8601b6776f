"""A trial worker imports DeepSpeed without MLflow (~1 s of start-up), and MLflow still works;
its engine compiles no C++ op on a fresh machine (27 s of a new user's first demo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FRESH_WORKER = """
import sys
from clear_ray.train.deepspeed import import_deepspeed
deepspeed = import_deepspeed()
assert callable(deepspeed.initialize)
assert "mlflow" not in sys.modules, "DeepSpeed's import pulled in MLflow"
import mlflow
assert mlflow.__version__
"""

FIRST_ENGINE = """
import torch
from deepspeed.comm import comm
from clear_ray.runtime.backend import ensure_process_group
from clear_ray.train.deepspeed import engine_config, import_deepspeed

ensure_process_group()
model = torch.nn.Linear(2, 1)
engine, *_ = import_deepspeed().initialize(
    model=model,
    model_parameters=list(model.parameters()),
    config=engine_config(1, 1, 0.1, 0.0, 0, False),
)
engine.backward(engine(torch.ones(1, 2)).sum())
engine.step()
assert comm.cdb.shm_comm_op is None, "DeepSpeed built its shared-memory all-reduce op"
"""


def run_fresh(script: str, env: dict[str, str] | None = None) -> None:
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_deepspeed_is_imported_without_mlflow_which_stays_importable() -> None:
    run_fresh(FRESH_WORKER)


def test_a_first_engine_on_a_fresh_machine_compiles_nothing(tmp_path: Path) -> None:
    extensions = tmp_path / "torch_extensions"  # torch's JIT build cache, empty as on a new machine
    run_fresh(FIRST_ENGINE, {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)})
    assert not extensions.exists() or not any(extensions.iterdir())
