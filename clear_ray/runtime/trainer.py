"""Ray Train's ``DataParallelTrainer`` without two helper processes per run that cost CPU here.

Train (2.60) starts, for every run, a ``DatasetManager`` actor (``DatasetsCallback``, datasets
or not) and a detached ``PlacementGroupCleaner`` actor (``PlacementGroupCleanerCallback``).
Each is one more Ray worker process per trial: ~1.9 s and ~2.6 s of CPU, taken from the
trials beside it on a CPU machine (bench/run_overhead.py: 3.7 s of CPU and 1.8 s of wall
time per trial together, two trials at a time on 2 cores). Trials and reference
jobs pass their data through ``train_loop_config``, so the first has nothing to manage when a
run has no datasets; the second's work, freeing what a killed controller left behind, is done
by the search driver's sweeps (``runtime/cleanup.py``).

It also replaces Train's failure policy with ``runtime/failures.py``'s, which does not retry an
error that the retry raised again.

``_create_default_callbacks`` and ``_initialize_and_run_controller`` are private Train API:
tests/test_backend.py checks that neither actor starts, tests/test_failures.py that a repeated
error is not retried.
"""

from __future__ import annotations

from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from clear_ray.runtime.failures import RepeatedErrorPolicy
from clear_ray.runtime.ray_compat import DatasetsCallback, PlacementGroupCleanerCallback


class LeanTrainer(DataParallelTrainer):
    def _create_default_callbacks(self) -> list:
        return [
            callback
            for callback in super()._create_default_callbacks()
            if not isinstance(callback, PlacementGroupCleanerCallback)
            and (not isinstance(callback, DatasetsCallback) or self.datasets)
        ]

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        controller_init_kwargs["failure_policy"] = RepeatedErrorPolicy(
            self.run_config.failure_config
        )
        return super()._initialize_and_run_controller(**controller_init_kwargs)
