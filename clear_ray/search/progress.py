"""One line per trial event on the console, instead of Tune's full result tables.

Each finished trial says why it ended and how long it took, followed by the search's ETA.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ray.tune import Callback
from ray.tune.experiment import Trial

from clear_ray.console import format_duration
from clear_ray.search.results import TrialMetrics, task_summary
from clear_ray.search.strategy import ASHA, COMPLETED, RETAIN_COLLAPSE, stop_reason
from clear_ray.train.keys import (
    BEST_EPOCH,
    BEST_OBJECTIVE,
    EPOCH,
    EPOCH_FEASIBLE,
    FEASIBLE,
    RELEARN_RECOVERY,
)
from clear_ray.train.selection import Thresholds


def stop_text(reason: str, last: dict, epochs: int, thresholds: Thresholds) -> str:
    """A finished trial's reason in words (``reason`` from ``strategy.stop_reason``)."""
    epoch = int(last.get(EPOCH, 0))
    if reason == COMPLETED:
        return f"completed {epochs}/{epochs} epochs"
    if reason == ASHA:
        return f"stopped by ASHA at epoch {epoch}/{epochs} (below its rung's cut)"
    if reason == RETAIN_COLLAPSE:
        metric = thresholds.retain_metric
        return (
            f"stopped at epoch {epoch}/{epochs}: retain collapsed "
            f"({metric}={last[metric]:.3g} < floor {thresholds.retain_floor:.3g})"
        )
    raise ValueError(f"unknown stop reason {reason!r}")


def eta_seconds(
    remaining: int, mean_trial_s: float, concurrency: int, running_s: Sequence[float] = ()
) -> float:
    """Seconds until ``remaining`` trials (those running included) are done.

    The work left is ``remaining`` mean trials less what the running ones have done (each
    counted up to one mean trial), shared by ``concurrency`` slots (fewer when fewer trials
    are left).
    """
    if remaining <= 0:
        return 0.0
    done = sum(min(elapsed, mean_trial_s) for elapsed in running_s)
    return max(0.0, remaining * mean_trial_s - done) / min(concurrency, remaining)


def eta_line(
    done: int,
    total: int,
    elapsed_s: float,
    trial_times: Sequence[float],
    concurrency: int,
    running_s: Sequence[float] = (),
) -> str:
    """``3/10 trials done, 12m40s elapsed, about 21m10s left (mean trial 4m13s, 2 at once)``."""
    head = f"{done}/{total} trials done, {format_duration(elapsed_s)} elapsed"
    if done >= total:
        return head
    if not trial_times:
        return f"{head}, time left known after the first trial"
    mean = sum(trial_times) / len(trial_times)
    left = eta_seconds(total - done, mean, concurrency, running_s)
    return (
        f"{head}, about {format_duration(left)} left "
        f"(mean trial {format_duration(mean)}, {concurrency} at once)"
    )


def lost_cause(trial: Trial) -> str | None:
    """The name of a failed trial's error when it says its driver or node was lost, else None.

    Read from the driver's local copy of the pickled error (synced to storage only later).
    """
    from ray import cloudpickle
    from ray.exceptions import RayTaskError

    from clear_ray.search.trainable import LOST

    path = Path(trial.pickled_error_file) if trial.pickled_error_file else None
    if path is None or not path.is_file():
        return None
    error = cloudpickle.loads(path.read_bytes())
    cause = error.cause if isinstance(error, RayTaskError) else error
    return type(cause).__name__ if isinstance(cause, LOST) else None


class ProgressPrinter(Callback):
    def __init__(
        self,
        objective: str,
        num_samples: int,
        thresholds: Thresholds,
        epochs: int,
        concurrency: int,
    ) -> None:
        self.objective = objective
        self.num_samples = num_samples
        self.thresholds = thresholds
        # The forget metric of the thresholds' family: the extended one is 0 on the tiny
        # model (its harmonic mean takes ROUGE and TOFU text scores), CLEAR's is not.
        self.forget_metric = TrialMetrics(retain=thresholds.retain_metric).forget
        self.epochs = epochs
        self.concurrency = concurrency
        self.started = time.monotonic()  # of this search (or of its resumption)
        self.trial_started: dict[str, float] = {}
        self.trial_times: list[float] = []  # wall time of each trial finished so far

    def _print(self, trial_id: str, message: str) -> None:
        print(f"[trial {trial_id}] {message}", file=sys.stderr, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.trial_started:  # restarted: said by on_trial_recover
            return
        self.trial_started[trial.trial_id] = time.monotonic()
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items()
        )
        number = trials.index(trial) + 1  # in creation order: the trials at once are made first
        self._print(trial.trial_id, f"started ({number}/{self.num_samples}): {params}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        feasible = "feasible" if result.get(EPOCH_FEASIBLE) else "infeasible"
        tasks = task_summary(result)
        self._print(
            trial.trial_id,
            f"epoch {int(result.get(EPOCH, 0))}: {self.objective}="
            f"{result.get(self.objective, float('nan')):.4g} "
            f"{self.forget_metric}={result.get(self.forget_metric, float('nan')):.3f} "
            f"{self.thresholds.retain_metric}="
            f"{result.get(self.thresholds.retain_metric, float('nan')):.3f} "
            f"({feasible}){f' [{tasks}]' if tasks else ''}",
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        reason = stop_text(
            stop_reason(last, self.epochs, self.thresholds), last, self.epochs, self.thresholds
        )
        best = last.get(BEST_OBJECTIVE, math.nan)
        recovery = (
            f", relearn recovery {last[RELEARN_RECOVERY]:.3f}" if RELEARN_RECOVERY in last else ""
        )
        self._finished(
            trials,
            trial,
            f"{reason}; best epoch {int(last.get(BEST_EPOCH, -1))}, "
            f"{self.objective}={best:.4g}{recovery}, "
            f"{'feasible' if last.get(FEASIBLE) else 'infeasible'}",
        )

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """Tune restarts every failed trial (``search.max_failures``), but only a lost driver
        or node is worth a line: an error the trial driver raised is re-raised at once by the
        restart (``trainable.FinalError``), and its one line comes with ``on_trial_error``."""
        lost = lost_cause(trial)
        if lost:
            self._print(trial.trial_id, f"lost ({lost}); restarting from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        from clear_ray.search.trial_logger import error_reason

        self._finished(
            trials,
            trial,
            f"FAILED: {error_reason(trial)} (traceback in {trial.path}/error.txt)",
        )

    def _finished(self, trials: list[Trial], trial: Trial, message: str) -> None:
        now = time.monotonic()
        wall = now - self.trial_started.pop(trial.trial_id, now)
        self.trial_times.append(wall)
        self._print(trial.trial_id, f"{message} in {format_duration(wall)}")
        # Tune marks this trial TERMINATED only after its callbacks (ERROR before them).
        done = sum(t is trial or t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        running = [now - t for t in self.trial_started.values()]
        line = eta_line(
            done, self.num_samples, now - self.started, self.trial_times, self.concurrency, running
        )
        print(f"[search] {line}", file=sys.stderr, flush=True)
