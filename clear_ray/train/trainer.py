"""Ray Train's ``DataParallelTrainer`` without the Ray Data actor a run without datasets never uses.

Train (2.60) starts a ``DatasetManager`` actor for every run, datasets or not
(``ray/train/v2/_internal/callbacks/datasets.py``, added by ``_create_default_callbacks``):
one more Ray worker process per trial, ~1.5 s of CPU to start it and import Ray Data, taken
from the trials beside it on a CPU machine. Trials and reference jobs pass their data through
``train_loop_config``, so the callback that makes it is left out when there are no datasets.
"""

from __future__ import annotations

from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer


class DatasetFreeTrainer(DataParallelTrainer):
    def _create_default_callbacks(self) -> list:
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [callback for callback in callbacks if not isinstance(callback, DatasetsCallback)]
