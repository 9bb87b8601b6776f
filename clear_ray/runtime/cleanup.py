"""Removes the placement groups that dead Ray Train controllers left behind.

Why (Ray 2.60): when Tune stops a trial (ASHA's STOP, which it also gives every trial reaching
``max_t`` with its last report, the collapse stopper, a confirm run's selected epoch), it ends
the trial actor while ``trainer.fit()`` still runs there. The Train controller is fate-shared
with that actor and dies, often before it removed its workers' placement group: mid-run,
mid-shutdown, or while the group was still starting. GCS keeps a non-detached group until its
creator actor *and* its job are dead, and the job (this search) lives on, so the group keeps
its CPUs, and the next trial or evaluation waits for them (with 2 cores: for ever).

Ray's remedy, a detached ``PlacementGroupCleaner`` per run that polls the dashboard's State API,
costs a process per trial and fails with the dashboard, so runs start without it
(``runtime/trainer.py``). Instead the search driver sweeps: GCS's placement-group table names
each group's creator and marks it when that actor dies (``ray_compat.placement_groups``; the
public ``placement_group_table`` leaves both out). A live group whose creator was a Train
controller that is dead is an orphan: its workers died with their controller, and nothing will
use it. Whichever search or reference job on the cluster started it, it is removed. A group whose
controller lives is never touched: the controller would take the lost workers for a crash and
start a new group.

Nothing has to be recorded first, so no moment is uncovered: a controller killed after it created
its group and before its workers ran leaves an orphan like one killed mid-run (an earlier
design, records written once the workers ran, left exactly those groups behind;
tests/test_search_cleanup.py kills a real Train run while its group waits). Sweeps run
while Tune runs (:class:`TrainGroupReaper`), after a Tune run until its stopped trials'
controllers are dead (:func:`reap`), and while a driver-side task waits to start
(``runtime/driver_tasks.py``).
"""

from __future__ import annotations

import time

import ray
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from clear_ray.runtime.ray_compat import (
    TRAIN_CONTROLLER_CLASS,
    PlacementGroupInfo,
    actor_info,
    placement_groups,
)

POLL_S = 0.5
SWEEP_EVERY_S = 1.0  # while Tune runs: a few GCS reads per sweep
REAP_WAIT_S = 60.0  # after a Tune run, for its stopped trials' controllers to die


def creator_class(group: PlacementGroupInfo) -> str | None:
    """The class of the actor that created the group (None: a driver or task created it)."""
    return actor_info(group.creator).get("ActorClassName") if group.creator else None


def is_train_group(group: PlacementGroupInfo) -> bool:
    """A live group a Train controller created: its workers' group."""
    return group.live and not group.detached and creator_class(group) == TRAIN_CONTROLLER_CLASS


def remove_orphans(groups: list[PlacementGroupInfo]) -> list[str]:
    """Removes those of ``groups`` whose Train controller is dead; returns their ids."""
    removed = []
    for group in groups:
        if group.creator_dead and is_train_group(group):
            remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group.group_id)))
            removed.append(group.group_id)
    return removed


def reap_orphans() -> list[str]:
    """Removes every orphaned Train group on the cluster; returns the ids removed now."""
    return remove_orphans(placement_groups())


def reap(wait_s: float = REAP_WAIT_S) -> list[str]:
    """After a Tune run: removes orphans until no live group of this job has a live Train
    controller (its stopped trials' controllers die within seconds; the job runs no other
    Train run meanwhile), or for ``wait_s``.

    Returns the ids of the groups removed here.
    """
    job = ray.get_runtime_context().get_job_id()
    removed = []
    deadline = time.monotonic() + wait_s
    while True:
        groups = placement_groups()
        removed += remove_orphans(groups)
        dying = [
            group
            for group in groups
            if group.job == job and not group.creator_dead and is_train_group(group)
        ]
        if not dying or time.monotonic() >= deadline:
            return removed
        time.sleep(POLL_S)


class TrainGroupReaper(Callback):
    """Sweeps orphans while Tune runs (at most every ``SWEEP_EVERY_S``), so a trial Tune starts
    gets the CPUs a stopped trial's controller left held, a retried trial those its lost run
    held (GCS reschedules a dead controller's group onto a live node)."""

    def __init__(self) -> None:
        self.swept_at = -float("inf")

    def on_step_begin(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if now - self.swept_at >= SWEEP_EVERY_S:
            self.swept_at = now
            reap_orphans()
