"""One Tune trial = a light driver that launches a Ray Train ``TorchTrainer``.

The supported Train V2 + Tune pattern (shared/STACK_NOTES.md): the function trainable builds
the trainer and calls ``fit()`` without returning its result; worker reports reach Tune
through ``TuneReportCallback`` in the *Train* run config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clear_ray.config import Config
from clear_ray.train.loop import TrialInputs, ray_train_loop

DRIVER_CPUS = 0.25  # Tune refuses 0; the trial driver only waits on its workers
KEPT_CHECKPOINTS = 2  # by score: the best epoch's adapter is always among them


def make_trainable(
    base: Config, inputs: TrialInputs, storage_path: str
) -> Callable[[dict[str, Any]], None]:
    base_flat = base.to_flat()
    search = base.search

    def run_trial(params: dict[str, Any]) -> None:
        import ray.train
        from ray import tune
        from ray.train.torch import TorchConfig, TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback

        use_gpu = search.gpus_per_trial > 0
        resources = {"CPU": search.cpus_per_worker}
        if use_gpu:
            resources["GPU"] = search.gpus_per_trial / search.workers_per_trial
        trial_id = tune.get_context().get_trial_id()
        trainer = TorchTrainer(
            ray_train_loop,
            train_loop_config={"config": {**base_flat, **params}, "inputs": inputs.to_dict()},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=search.workers_per_trial,
                use_gpu=use_gpu,
                resources_per_worker=resources,
            ),
            run_config=ray.train.RunConfig(
                name=f"train-{trial_id}",  # deterministic: a restarted trial finds its own run
                storage_path=storage_path,
                callbacks=[TuneReportCallback()],
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=KEPT_CHECKPOINTS,
                    checkpoint_score_attribute="epoch_score",
                    checkpoint_score_order="max",
                ),
            ),
        )
        trainer.fit()

    return run_trial
