"""Train's retry of failed workers, less the retries that cannot help.

Ray Train retries a run whose workers failed up to ``FailureConfig.max_failures`` times, from
the last checkpoint. That is right for a worker lost with its node or killed by the OOM killer,
and useless for an error in our own code or data (a truncated ``model.safetensors``, a config
the model cannot take): each retry loads the same file and fails the same way, and the trial
prints the same traceback ``max_failures + 1`` times. So a failure whose workers raised the very
errors of the previous failure (type and message, numbers ignored, as Train groups its
workers' errors in ``worker_group/poll.py``) is final at once; a lost worker, or a different
error, is retried as before.
"""

from __future__ import annotations

import re

from ray.exceptions import RayError
from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError

from clear_ray.runtime.ray_compat import DefaultFailurePolicy, FailureDecision, RayTrainError

_NUMBER = re.compile(r"\d+")


def error_signature(error: TrainingFailedError) -> frozenset[str] | None:
    """The errors the workers' training function raised, each as ``Type: message`` with numbers
    blanked; None if any worker failed otherwise (died, missed its health checks: Ray's errors,
    ``RayError`` or Train's ``RayTrainError``), or for a failure that is not the workers'.

    Train hands the controller the exception the function raised (``worker_group/poll.py``
    ``WorkerGroupPollStatus.errors``)."""
    if not isinstance(error, WorkerGroupError) or not error.worker_failures:
        return None
    signature = set()
    for failure in error.worker_failures.values():
        if isinstance(failure, (RayError, RayTrainError)):
            return None
        signature.add(_NUMBER.sub("N", f"{type(failure).__name__}: {failure}"))
    return frozenset(signature)


class RepeatedErrorPolicy(DefaultFailurePolicy):
    """Train's default policy, except that an error repeated on the retry is raised."""

    def __init__(self, failure_config) -> None:
        super().__init__(failure_config)
        self._last_signature: frozenset[str] | None = None

    def make_decision(self, training_failed_error: TrainingFailedError) -> FailureDecision:
        signature = error_signature(training_failed_error)
        repeated = signature is not None and signature == self._last_signature
        self._last_signature = signature
        if repeated:
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)
