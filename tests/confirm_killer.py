"""``python tests/confirm_killer.py <configuration>:<seed> <clear_ray.tune arguments>``: runs a
search whose driver SIGKILLs itself at that confirm run's first result, as a lost driver dies.

A test-only entry point (tests/test_resume_confirm_e2e.py), so the kill point is deterministic
without a fault-injection hook in the production driver.
"""

from __future__ import annotations

import os
import signal
import sys

from clear_ray.cli import tune
from clear_ray.search.confirm import SeedRecorder


def kill_at(point: str) -> None:
    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if point == f"{self.label}:{trial.config['train.seed']}":
            os.kill(os.getpid(), signal.SIGKILL)

    SeedRecorder.on_trial_result = on_trial_result


if __name__ == "__main__":
    kill_at(sys.argv[1])
    sys.exit(tune.main(sys.argv[2:]))
