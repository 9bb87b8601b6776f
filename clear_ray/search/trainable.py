"""One Tune trial = a light driver that launches a Ray Train run (torch process group).

The supported Train V2 + Tune pattern (shared/STACK_NOTES.md): the function trainable builds
the trainer and calls ``fit()`` without returning its result; worker reports reach Tune
through ``TuneReportCallback`` in the *Train* run config. The trainer is a
``DataParallelTrainer`` with ``train/backend.py``'s process group rather than ``TorchTrainer``,
whose config imports torch in this actor and in Train's controller (~1.3 s each, per trial).

Faults: a worker crash is retried by Train from the last epoch checkpoint
(``search.max_failures``). A diverged loss is not a crash worth retrying (it would diverge
again), so workers report it, with a checkpoint, instead of raising; the report is kept from
Tune (it has no metrics), and the trial driver finds it as Train's last checkpointed result and
raises ``FloatingPointError`` with the reason, which Tune records as the trial's error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback

from clear_ray.config import Config
from clear_ray.train.worker import DIVERGED_KEY, TrialInputs, ray_train_loop

# Defaults for the environment of every Ray process in a search (``ray.init``'s runtime_env);
# a variable already set in the user's environment wins.
RAY_ENV_DEFAULTS = {
    "TOKENIZERS_PARALLELISM": "false",
    # Train V2 polls its workers every 2 s by default, so a trial ended up to 2 s after its
    # last epoch; a poll is one small actor call per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # One more process per trial, started while the worker imports its stack, that watches
    # for node drains. Without it a preempted worker still restarts from the last epoch
    # checkpoint (Ray tells preemptions from crashes by the actor's death cause).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def ray_env_vars() -> dict[str, str]:
    return {name: os.environ.get(name, value) for name, value in RAY_ENV_DEFAULTS.items()}


DRIVER_CPUS = 0.25  # Tune refuses 0; the trial driver only waits on its workers
KEPT_CHECKPOINTS = 2  # by score (the best epoch's adapter); Train also keeps the latest


class EpochReportCallback(TuneReportCallback):
    """Forwards epoch reports to Tune, but not a divergence report (it has no metrics)."""

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if not metrics[0].get(DIVERGED_KEY):
            super().after_report(run_context, metrics, checkpoint)


def make_trainable(
    base: Config, inputs: TrialInputs, storage_path: str
) -> Callable[[dict[str, Any]], None]:
    base_flat = base.to_flat()
    search = base.search

    def run_trial(params: dict[str, Any]) -> None:
        import ray.train
        from ray import tune
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        from clear_ray.train.backend import TorchProcessGroupConfig

        use_gpu = search.gpus_per_trial > 0
        resources = {"CPU": search.cpus_per_worker}
        if use_gpu:
            resources["GPU"] = search.gpus_per_trial / search.workers_per_trial
        trial_id = tune.get_context().get_trial_id()
        trainer = DataParallelTrainer(
            ray_train_loop,
            train_loop_config={"config": {**base_flat, **params}, "inputs": inputs},
            backend_config=TorchProcessGroupConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=search.workers_per_trial,
                use_gpu=use_gpu,
                resources_per_worker=resources,
            ),
            run_config=ray.train.RunConfig(
                # Deterministic: a restarted or resumed trial finds its own checkpoints.
                name=f"train-{trial_id}",
                storage_path=storage_path,
                callbacks=[EpochReportCallback()],
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=KEPT_CHECKPOINTS,
                    checkpoint_score_attribute="epoch_score",
                    checkpoint_score_order="max",
                ),
                failure_config=ray.train.FailureConfig(max_failures=search.max_failures),
            ),
        )
        result = trainer.fit()
        if not result.metrics:  # Tune would end the whole search on a trial without metrics
            raise RuntimeError("the trial ended without reporting an epoch")
        if result.metrics.get(DIVERGED_KEY):
            raise FloatingPointError(result.metrics["reason"])

    return run_trial
