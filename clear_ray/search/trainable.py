"""One Tune trial = a light driver that launches a Ray Train run (torch process group).

The supported Train V2 + Tune pattern (shared/STACK_NOTES.md): the function trainable builds
the trainer and calls ``fit()`` without returning its result; worker reports reach Tune
through ``TuneReportCallback`` in the *Train* run config. The trainer is a
``DataParallelTrainer`` with ``train/backend.py``'s process group rather than ``TorchTrainer``,
whose config imports torch in this actor and in Train's controller (~1.3 s each, per trial).

Faults: a worker crash is retried by Train from the last epoch checkpoint
(``search.max_failures``); an error the workers raise again, the same, on the retry (a corrupt
file, an impossible config) is final there (``train/failures.py``). A diverged loss is not a
crash worth retrying (it would diverge again), so workers report it, with a checkpoint, instead
of raising; the report is kept from Tune (it has no metrics), and the trial driver finds it as
Train's last checkpointed result and raises ``FloatingPointError`` with the reason, which Tune
records as the trial's error.

A trial whose driver dies (its node lost) is retried by Tune and goes on from its last epoch
checkpoint; what the driver raises is final (:class:`FinalError`).

Never waiting silently: workers that cannot start within ``search.worker_start_timeout_s``
(Train's ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``; its default failure policy would retry such
a start for ever) fail the trial once, with the resources asked for and those the cluster has.
The Train controller records its workers' placement group (``train/groups.py``), so the search
driver can remove a group Tune's stop left behind (``search/cleanup.py``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import ray
from ray.tune.integration.ray_train import TuneReportCallback

from clear_ray.config import Config, SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.train.keys import DIVERGED_KEY, EPOCH_SCORE, REASON
from clear_ray.train.worker import TrialInputs, ray_train_loop

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
    # Train's Prometheus metrics of controller states and report times, for Ray's Grafana
    # dashboards. With Ray's dashboard (search.ray_dashboard), ~3.8 s of CPU per trial
    # together (bench/run_overhead.py).
    "RAY_TRAIN_METRICS_ENABLED": "0",
}


def ray_env_vars() -> dict[str, str]:
    return {name: os.environ.get(name, value) for name, value in RAY_ENV_DEFAULTS.items()}


def init_ray(search: SearchConfig) -> None:
    """Connects to the running Ray, else starts a local one (``search.ray_dashboard`` says
    whether with its dashboard). Worker output stays in Ray's session logs. A CPU search's
    kernels are pinned here, in this process and in every Ray process of the job
    (``search.pin_cpu_kernels``, clear_ray/kernels.py)."""
    from clear_ray.kernels import kernel_env, pin_this_process

    pin_this_process(search)
    ray.init(
        ignore_reinit_error=True,
        log_to_driver=False,
        include_dashboard=search.ray_dashboard,
        runtime_env={"env_vars": {**ray_env_vars(), **kernel_env(search)}},
    )


# The trial driver only waits on its Train workers, so it holds no CPU (N cores hold N one-CPU
# trials, not N - 1); Tune needs a non-empty request, and the driver's memory is what it uses.
DRIVER_RESOURCES = {"cpu": 0, "memory": 64 * 1024**2}
KEPT_CHECKPOINTS = 2  # by score (the best epoch's adapter); Train also keeps the latest


START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
# Start errors Train retries without limit by default (FailureConfig.controller_failure_limit).
START_ERRORS = ("WorkerGroupStartupTimeoutError", "InsufficientClusterResourcesError")


class EpochReportCallback(TuneReportCallback):
    """Forwards epoch reports to Tune, but not a divergence report (it has no metrics)."""

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if not metrics[0].get(DIVERGED_KEY):
            super().after_report(run_context, metrics, checkpoint)


def trial_run_name(trial_id: str) -> str:
    """A trial's Train run: deterministic, so a restarted or resumed trial finds its own
    checkpoints, and the search driver its recorded placement groups (search/cleanup.py)."""
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


def worker_resources(search: SearchConfig) -> dict[str, float]:
    resources = {"CPU": search.cpus_per_worker}
    if search.gpus_per_trial > 0:
        resources["GPU"] = search.gpus_per_trial / search.workers_per_trial
    return resources


def check_cluster(search: SearchConfig) -> None:
    """Refuses a trial shape the connected cluster can never run (without an autoscaler).

    Without this check such a trial would wait for resources that never come.
    """
    from ray._private.state import state

    if state.get_cluster_config() is not None:
        return  # an autoscaler's cluster config: it may add nodes (Train checks its maximum)
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    per_worker = worker_resources(search)
    for name, path in (("CPU", "search.workers_per_trial"), ("GPU", "search.gpus_per_trial")):
        need = per_worker.get(name, 0.0) * search.workers_per_trial
        total = sum(node.get(name, 0.0) for node in nodes)
        largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
        if per_worker.get(name, 0.0) > largest or need > total:
            value = dataclasses.asdict(search)[path.split(".")[1]]
            raise ConfigError(
                f"{path}: {value:g} needs {need:g} {name} per trial "
                f"({search.workers_per_trial} worker(s) with {per_worker}); this cluster has "
                f"{total:g} {name} ({largest:g} on its largest node) and no autoscaler"
            )


def concurrent_trials(search: SearchConfig) -> int:
    """``search.max_concurrent``, or for 0 as many trials as the connected cluster's nodes hold
    at once (each trial's workers on whole nodes' CPUs and GPUs; at least 1).

    Why automatic: one trial's worker runs torch on one thread, so on 2 cores one trial at a
    time leaves a core idle, and a GPU cluster's user expects one trial per GPU. Counted on the
    nodes up now: an autoscaling cluster's user sets ``--max-concurrent`` for the nodes to come.
    """
    if search.max_concurrent:
        return search.max_concurrent
    per_worker = worker_resources(search)
    slots = 0
    for node in (node["Resources"] for node in ray.nodes() if node["Alive"]):
        slots += min(int(node.get(name, 0.0) / need + 1e-9) for name, need in per_worker.items())
    return max(1, slots // search.workers_per_trial)


def data_parallel_trainer(
    loop: Callable[[dict], None],
    loop_config: dict[str, Any],
    search: SearchConfig,
    name: str,
    storage_path: str,
    **run_options: Any,
):
    """A Train run of ``loop`` on ``search``'s workers: this module's process group (and
    neither Train's Ray Data actor nor its placement group cleaner, ``train/trainer.py``), the
    trial's resources, worker crashes retried ``search.max_failures`` times (from the last
    checkpoint), and a start that cannot get its workers failed once, not retried for ever.

    Trials and the Original/Gold finetune (``references.py``) both run this way.
    """
    import ray.train

    from clear_ray.train.backend import TorchProcessGroupConfig
    from clear_ray.train.trainer import LeanTrainer

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
        from clear_ray.search.session import storage_filesystem

        self.filesystem, root = storage_filesystem(storage_path)
        self.path = f"{root.rstrip('/')}/{name}.error"

    def record(self, error: Exception) -> None:
        from ray import cloudpickle

        try:
            blob = cloudpickle.dumps(error)
        except Exception:  # an unpicklable error: its type and message
            blob = cloudpickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
        self.filesystem.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.filesystem.open_output_stream(self.path) as stream:
            stream.write(blob)

    def raise_if_recorded(self) -> None:
        from pyarrow import fs
        from ray import cloudpickle

        if self.filesystem.get_file_info(self.path).type == fs.FileType.NotFound:
            return
        with self.filesystem.open_input_stream(self.path) as stream:
            raise cloudpickle.loads(stream.read())


def trial_trainable(
    base: Config, inputs: TrialInputs, storage_path: str
) -> Callable[[dict[str, Any]], None]:
    """:func:`make_trainable` with the trial driver's resources, as Tune's trainable."""
    from ray import tune

    return tune.with_resources(make_trainable(base, inputs, storage_path), DRIVER_RESOURCES)


def make_trainable(
    base: Config, inputs: TrialInputs, storage_path: str
) -> Callable[[dict[str, Any]], None]:
    base_flat = base.to_flat()
    search = base.search

    def run_trial(params: dict[str, Any]) -> None:
        from ray import tune

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
        import ray.train

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
