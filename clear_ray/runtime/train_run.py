"""A Ray Train run of a worker loop in a trial's shape, and why one that never started failed.

Never waiting silently: workers that cannot start within ``search.worker_start_timeout_s``
(Train's ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``; its default failure policy would retry such
a start for ever) fail the run once, with the resources asked for and those the cluster has.
A group Tune's stop left behind is removed by the search driver's sweeps
(``runtime/cleanup.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import ray
import ray.train

from clear_ray.config import SearchConfig
from clear_ray.runtime.backend import TorchProcessGroupConfig
from clear_ray.runtime.cluster import worker_resources
from clear_ray.runtime.trainer import LeanTrainer

START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
# Start errors Train retries without limit by default (FailureConfig.controller_failure_limit).
START_ERRORS = ("WorkerGroupStartupTimeoutError", "InsufficientClusterResourcesError")


def trial_run_name(trial_id: str) -> str:
    """A trial's Train run: deterministic, so a restarted or resumed trial finds its own
    checkpoints, and the search driver its recorded placement groups (runtime/cleanup.py)."""
    return f"train-{trial_id}"


def start_failure(error: Exception, workers: int, resources: dict, timeout_s: float) -> str | None:
    """The one-line reason of a Train run whose workers never started, else None."""
    cause = getattr(error, "controller_failure", None)
    if type(cause).__name__ not in START_ERRORS:
        return None
    free = {k: v for k, v in ray.available_resources().items() if k in resources}
    total = {k: v for k, v in ray.cluster_resources().items() if k in resources}
    return (
        f"no resources for {workers} worker(s) with {resources} within {timeout_s:g} s "
        f"(search.worker_start_timeout_s): the cluster has {total}, free now {free}"
    )


def data_parallel_trainer(
    loop: Callable[[dict], None],
    loop_config: dict[str, Any],
    search: SearchConfig,
    name: str,
    storage_path: str,
    **run_options: Any,
):
    """A Train run of ``loop`` on ``search``'s workers: ``runtime/backend.py``'s process group (and
    neither Train's Ray Data actor nor its placement group cleaner, ``runtime/trainer.py``), the
    trial's resources, worker crashes retried ``search.max_failures`` times (from the last
    checkpoint), and a start that cannot get its workers failed once, not retried for ever.

    Trials (``search/trainable.py``) and the Original/Gold finetune jobs
    (``references/jobs.py``) both run this way.
    """
    use_gpu = search.gpus_per_trial > 0
    # Read by the Train controller this run starts (Ray propagates RAY_TRAIN_* variables).
    os.environ[START_TIMEOUT_ENV] = str(search.worker_start_timeout_s)
    return LeanTrainer(
        loop,
        train_loop_config=loop_config,
        backend_config=TorchProcessGroupConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=search.workers_per_trial,
            use_gpu=use_gpu,
            resources_per_worker=worker_resources(search),
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(
                max_failures=search.max_failures, controller_failure_limit=0
            ),
            **run_options,
        ),
    )


def fit(trainer, search: SearchConfig):
    """``trainer.fit()``; workers that never started raise one line that says why."""
    try:
        return trainer.fit()
    except Exception as error:
        reason = start_failure(
            error, search.workers_per_trial, worker_resources(search), search.worker_start_timeout_s
        )
        if reason is None:
            raise
        raise RuntimeError(reason) from None
