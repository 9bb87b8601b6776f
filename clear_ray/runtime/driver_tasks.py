"""Ray tasks the search driver waits on (reference builds and evaluations, final and confirm
evaluations, robustness checks), with a bound on how long they may wait to *start*.

Why: a Ray task waits in the scheduler's queue for its CPUs with no deadline. When those CPUs
are held by a placement group whose Train controller is gone (a trial Tune stopped, a search
killed and resumed: runtime/cleanup.py), the driver would wait for ever, and ``ray status``
shows only "Pending Demands". So each task announces its start in GCS's key-value store, and
:func:`each_result` watches for progress: while none of its tasks runs and some wait to start, it
first removes orphaned groups (:func:`cleanup.reap_orphans`), and after
``search.worker_start_timeout_s`` without a start it fails with one line that names what
holds the resources. A task that runs for long is not a stall: only waiting to start is bounded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import ray

from clear_ray.config import SearchConfig
from clear_ray.errors import SearchStopped
from clear_ray.runtime.cleanup import creator_class, reap_orphans
from clear_ray.runtime.ray_compat import kv_del, kv_exists, kv_put, placement_groups

NAMESPACE = "clear_ray.task_starts"
POLL_S = 0.5
# Orphans are swept once nothing has started for this long: a task queued behind another
# search's running trial is the normal case, and the sweep is a few GCS calls.
SWEEP_AFTER_S = 5.0

Key = TypeVar("Key")


class TaskStartTimeout(SearchStopped):
    """A driver-side task could not start: the message says what holds the resources."""


def _announced(token: str, function: Callable[..., Any], *args: Any) -> Any:
    kv_put(token, b"1", NAMESPACE)
    return function(*args)


@dataclass(frozen=True)
class Launch:
    """A submitted task and the key its start is announced under."""

    ref: ray.ObjectRef
    token: str
    needs: dict[str, float]  # the resources it waits for


class DriverTask:
    """``function`` as a Ray task the driver waits on, with the resources it asks for."""

    def __init__(self, function: Callable[..., Any], cpus: float, gpus: float = 0) -> None:
        self.function = function
        self.needs = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        self._remote = ray.remote(_announced).options(num_cpus=cpus, num_gpus=gpus)

    def remote(self, *args: Any) -> Launch:
        token = uuid.uuid4().hex
        return Launch(self._remote.remote(token, self.function, *args), token, self.needs)


def trial_task(function: Callable[..., Any], search: SearchConfig) -> DriverTask:
    """``function`` with one trial worker's resources (a whole GPU if trials have GPUs)."""
    return DriverTask(function, search.cpus_per_worker, 1 if search.gpus_per_trial > 0 else 0)


def each_result(
    launches: Mapping[Key, Launch], what: str, search: SearchConfig
) -> Iterator[tuple[Key, Any]]:
    """Each launch's result in order, failing with :class:`TaskStartTimeout` when none of them
    runs and some have waited ``search.worker_start_timeout_s`` to start."""
    limit = search.worker_start_timeout_s
    started: set[str] = set()
    finished: set[str] = set()
    tokens = [launch.token for launch in launches.values()]
    last_progress = time.monotonic()
    swept_at = last_progress
    try:
        for key, launch in launches.items():
            while not ray.wait([launch.ref], timeout=POLL_S)[0]:
                now = time.monotonic()
                ready = ray.wait(
                    [launch.ref for launch in launches.values()],
                    num_returns=len(launches),
                    timeout=0,
                )[0]
                newly_finished = {
                    launch.token for launch in launches.values() if launch.ref in ready
                } - finished
                newly_started = {
                    token for token in set(tokens) - started if kv_exists(token, NAMESPACE)
                }
                if newly_finished or newly_started:
                    finished |= newly_finished
                    started |= newly_started | newly_finished
                    last_progress = now
                    continue
                if started - finished:  # one of ours runs: waiting is what it is for
                    last_progress = now
                    continue
                waited = now - last_progress
                if waited >= SWEEP_AFTER_S and now - swept_at >= SWEEP_AFTER_S:
                    swept_at = now
                    if reap_orphans():
                        last_progress = now
                        continue
                if waited >= limit:
                    waiting = len(tokens) - len(started)
                    raise TaskStartTimeout(
                        f"{what}: {waiting} task(s) could not start within {limit:g} s "
                        f"(search.worker_start_timeout_s); each needs {launch.needs}; "
                        f"{holders()}"
                    )
            yield key, ray.get(launch.ref)
            last_progress = time.monotonic()
    finally:
        for token in tokens:
            kv_del(token, NAMESPACE)


def holders() -> str:
    """What holds the cluster's resources: free and total, and the live placement groups with
    their creators (an orphan a sweep missed shows as a dead Train controller's)."""
    total = {k: round(v, 3) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    available = ray.available_resources()  # omits what is all taken
    free = {k: round(available.get(k, 0.0), 3) for k in total}
    groups = []
    for group in placement_groups():
        if group.state != "CREATED":
            continue
        bundles = [{k: v for k, v in b.items() if k in ("CPU", "GPU")} for b in group.bundles]
        if group.creator:
            state = "dead" if group.creator_dead else "alive"
            creator = f"{creator_class(group) or 'actor'} {group.creator[:12]}, {state}"
        else:
            creator = "a driver or task"
        groups.append(f"{group.group_id[:12]} {bundles} (created by {creator})")
    held = "; ".join(groups) if groups else "no placement group (tasks or other jobs hold them)"
    return f"the cluster has {total}, free now {free}; placement groups holding resources: {held}"


def result_of(launch: Launch, what: str, search: SearchConfig) -> Any:
    """One launch's result, under the same start bound as :func:`each_result`."""
    return dict(each_result({what: launch}, what, search))[what]
