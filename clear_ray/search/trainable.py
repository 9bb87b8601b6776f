"""One Tune trial = a light driver that launches a Ray Train run (torch process group).

The supported Train V2 + Tune pattern: the function trainable builds
the trainer and calls ``fit()`` without returning its result; worker reports reach Tune
through ``TuneReportCallback`` in the *Train* run config. The trainer is a
``DataParallelTrainer`` with ``runtime/backend.py``'s process group rather than ``TorchTrainer``,
whose config imports torch in this actor and in Train's controller (~1.3 s each, per trial).

Faults: a worker crash is retried by Train from the last epoch checkpoint
(``search.max_failures``); an error the workers raise again, the same, on the retry (a corrupt
file, an impossible config) is final there (``runtime/failures.py``). A diverged loss is not a
crash worth retrying (it would diverge again), so workers report it, with a checkpoint, instead
of raising; the report is kept from Tune (it has no metrics), and the trial driver finds it as
Train's last checkpointed result and raises ``FloatingPointError`` with the reason, which Tune
records as the trial's error.

A trial whose driver dies (its node lost) is retried by Tune and goes on from its last epoch
checkpoint; what the driver raises is final (:class:`FinalError`).

The Train run itself (its process group, failure policy and start bound) is
``runtime/train_run.py``'s, shared with the Original/Gold finetune jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
import ray.train
from pyarrow import fs
from ray import cloudpickle, tune
from ray.tune.integration.ray_train import TuneReportCallback

from clear_ray.config import Config
from clear_ray.runtime.store import storage_filesystem
from clear_ray.runtime.train_run import data_parallel_trainer, fit, trial_run_name
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.keys import DIVERGED_KEY, EPOCH_SCORE, REASON
from clear_ray.train.worker import ray_train_loop

# The trial driver only waits on its Train workers, so it holds no CPU (N cores hold N one-CPU
# trials, not N - 1); Tune needs a non-empty request, and the driver's memory is what it uses.
DRIVER_RESOURCES = {"cpu": 0, "memory": 64 * 1024**2}
KEPT_CHECKPOINTS = 2  # by score (the best epoch's adapter); Train also keeps the latest


class EpochReportCallback(TuneReportCallback):
    """Forwards epoch reports to Tune, but not a divergence report (it has no metrics)."""

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if not metrics[0].get(DIVERGED_KEY):
            super().after_report(run_context, metrics, checkpoint)


# Errors of a node lost under the trial (its Train controller dies with its owner, this
# driver, whose node is gone): not final, Tune's retry goes on from the last checkpoint.
LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.ObjectLostError,
)


class FinalError:
    """How a trial's Train run ended in error, kept beside the run (``<name>.error``).

    Tune retries a trial whose driver died (``search.max_failures``: a lost node takes the
    driver with it; the retry goes on from the last epoch checkpoint). Anything the driver
    itself raises is final (Train has already retried its workers' crashes; workers that
    cannot start or a diverged loss would do the same again), so a retry re-raises it at once
    instead of waiting for the same outcome.
    """

    def __init__(self, storage_path: str, name: str) -> None:
        self.filesystem, root = storage_filesystem(storage_path)
        self.path = f"{root.rstrip('/')}/{name}.error"

    def record(self, error: Exception) -> None:
        try:
            blob = cloudpickle.dumps(error)
        except Exception:  # an unpicklable error: its type and message
            blob = cloudpickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
        self.filesystem.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.filesystem.open_output_stream(self.path) as stream:
            stream.write(blob)

    def raise_if_recorded(self) -> None:
        if self.filesystem.get_file_info(self.path).type == fs.FileType.NotFound:
            return
        with self.filesystem.open_input_stream(self.path) as stream:
            raise cloudpickle.loads(stream.read())


def trial_trainable(
    base: Config, inputs: TrialInputs, storage_path: str
) -> Callable[[dict[str, Any]], None]:
    """:func:`make_trainable` with the trial driver's resources, as Tune's trainable."""
    return tune.with_resources(make_trainable(base, inputs, storage_path), DRIVER_RESOURCES)


def make_trainable(
    base: Config, inputs: TrialInputs, storage_path: str
) -> Callable[[dict[str, Any]], None]:
    base_flat = base.to_flat()
    search = base.search

    def run_trial(params: dict[str, Any]) -> None:
        name = trial_run_name(tune.get_context().get_trial_id())
        outcome = FinalError(storage_path, name)
        outcome.raise_if_recorded()
        try:
            train_trial(params, name)
        except LOST as error:  # its controller died with this driver's node: Tune retries
            raise error
        except Exception as error:
            outcome.record(error)
            raise

    def train_trial(params: dict[str, Any], name: str) -> None:
        trainer = data_parallel_trainer(
            ray_train_loop,
            {"config": {**base_flat, **params}, "inputs": inputs},
            search,
            name,
            storage_path,
            callbacks=[EpochReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=KEPT_CHECKPOINTS,
                checkpoint_score_attribute=EPOCH_SCORE,
                checkpoint_score_order="max",
            ),
        )
        result = fit(trainer, search)
        if not result.metrics:  # Tune would end the whole search on a trial without metrics
            raise RuntimeError("the trial ended without reporting an epoch")
        if result.metrics.get(DIVERGED_KEY):
            raise FloatingPointError(result.metrics[REASON])

    return run_trial
