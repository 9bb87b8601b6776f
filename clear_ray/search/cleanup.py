"""Removes the placement group of a Train run whose controller Tune killed.

Why (Ray 2.60, found reproducing issue 14): when Tune stops a trial (ASHA's STOP, which it also
gives every trial reaching ``max_t`` with its last report, or the collapse stopper), it ends the
trial actor while ``trainer.fit()`` still runs there. The Train controller is fate-shared with
that actor and dies mid-run, often mid-shutdown, before it removed its workers' placement group.
GCS keeps a non-detached group until its creator actor *and* its job are dead, and the job (this
search) lives on, so the group stays CREATED. Ray's only remedy is a detached
``PlacementGroupCleaner`` (``ray/train/v2/_internal/execution/controller/
placement_group_cleaner.py``, started by ``callbacks/placement_group_callback.py``) that
polls the dashboard's State API over HTTP; its loop catches only ``RayStateApiException``, so
any other error of that call ends its thread for good, and a slow dashboard delays it. The
next trial then waits for the group's CPU (with 2 cores: for ever).

The fix is deterministic and needs no dashboard: each report names its Train controller and
placement group (``trainable.EpochReportCallback``, ``train.worker``); this Tune callback, in
the search driver, removes the group of an ended trial as soon as GCS says its controller is
dead (also when Tune retries a trial whose node was lost: GCS reschedules the dead run's group
onto a live node). Removing it earlier would be wrong: a live controller would take the killed
workers for a crash and start a new group.
"""

from __future__ import annotations

import time

import ray
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

from clear_ray.train.worker import CONTROLLER_KEY, PLACEMENT_GROUP_KEY

POLL_S = 0.5


def actor_dead(actor_id: str) -> bool:
    """From GCS directly (not the dashboard's State API, which is what fails under load)."""
    info = ray._private.state.actors(actor_id=actor_id)
    return not info or info.get("State") == "DEAD"


def remove_if_present(group_id: str) -> bool:
    """Removes the placement group unless it is already gone; True if it was removed now."""
    group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id)))
    if placement_group_table(group).get("state", "REMOVED") == "REMOVED":
        return False
    remove_placement_group(group)
    return True


class TrainGroupReaper(Callback):
    """Removes ended trials' Train placement groups once their controllers are dead."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}  # controller actor id -> placement group id

    def _ended(self, trial) -> None:
        last = trial.last_result or {}
        if last.get(CONTROLLER_KEY) and last.get(PLACEMENT_GROUP_KEY):
            self.pending[last[CONTROLLER_KEY]] = last[PLACEMENT_GROUP_KEY]

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """A trial Tune starts again (its driver died with its node): Ray reschedules the lost
        run's group on another node, where it would hold the CPUs the retry's workers need."""
        self._ended(trial)

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.reap()

    def reap(self, wait_s: float = 0.0) -> list[str]:
        """Removes the groups of dead controllers, waiting up to ``wait_s`` for the others.

        Returns the ids of the groups removed here (already removed ones are not counted).
        """
        removed = []
        deadline = time.monotonic() + wait_s
        while True:
            for controller in [c for c in self.pending if actor_dead(c)]:
                group = self.pending.pop(controller)
                if remove_if_present(group):
                    removed.append(group)
            if not self.pending or time.monotonic() >= deadline:
                return removed
            time.sleep(POLL_S)
