"""Removes the placement group of a Train run whose controller Tune killed.

Why (Ray 2.60): when Tune stops a trial (ASHA's STOP, which it also
gives every trial reaching ``max_t`` with its last report, or the collapse stopper), it ends the
trial actor while ``trainer.fit()`` still runs there. The Train controller is fate-shared with
that actor and dies mid-run, often mid-shutdown, before it removed its workers' placement group.
GCS keeps a non-detached group until its creator actor *and* its job are dead, and the job (this
search) lives on, so the group stays CREATED. The next trial then waits for the group's CPU
(with 2 cores: for ever).

Ray's remedy, a detached ``PlacementGroupCleaner`` per run that polls the dashboard's State API,
costs a process per trial and fails with the dashboard (its loop catches only
``RayStateApiException``), so runs start without it (``runtime/trainer.py``). Instead each Train
controller records the groups it starts and has not removed (``runtime/groups.py``); this Tune
callback, in the search driver, removes an ended trial's recorded group as soon as GCS says its
controller is dead (also when Tune retries a trial whose node was lost: GCS reschedules the
dead run's group onto a live node). Removing it earlier would be wrong: a live controller would
take the killed workers for a crash and start a new group.

The callback alone is not enough: ``Tuner.restore`` unpickles the run config saved when the
search began, so a resumed search runs a *copy* of the reaper made then, and a reaper the
driver builds for the resume is never called. The trials that end last (after the loop's final
``on_step_begin``) then leave their groups, and the final evaluation waits for their CPUs for
ever. So after ``fit()`` the driver names the experiment's trials itself (:meth:`track`) and
reaps them; and whatever waits for resources sweeps every record whose controller is dead
(:func:`reap_orphans`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import ray
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

from clear_ray.runtime.groups import every_recorded_group, forget_group, recorded_groups
from clear_ray.runtime.ray_compat import actor_info
from clear_ray.runtime.train_run import trial_run_name

POLL_S = 0.5


def actor_dead(actor_id: str) -> bool:
    """From GCS directly (not the dashboard's State API, which is what fails under load)."""
    info = actor_info(actor_id)
    return not info or info.get("State") == "DEAD"


def remove_if_present(group_id: str) -> bool:
    """Removes the placement group unless it is already gone; True if it was removed now."""
    group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id)))
    if placement_group_table(group).get("state", "REMOVED") == "REMOVED":
        return False
    remove_placement_group(group)
    return True


@dataclass(frozen=True)
class RecordedGroup:
    run_name: str
    controller: str  # the Train controller's actor id
    group: str  # its workers' placement group id


class TrainGroupReaper(Callback):
    """Removes ended trials' recorded Train placement groups once their controllers are dead."""

    def __init__(self) -> None:
        self.pending: list[RecordedGroup] = []

    def track(self, trial_ids: Iterable[str]) -> None:
        """Adds the recorded groups of these ended trials to those :meth:`reap` removes."""
        for trial_id in trial_ids:
            run_name = trial_run_name(trial_id)
            for controller, group in recorded_groups(run_name).items():
                record = RecordedGroup(run_name, controller, group)
                if record not in self.pending:
                    self.pending.append(record)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.track([trial.trial_id])

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.track([trial.trial_id])

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """A trial Tune starts again (its driver died with its node): Ray reschedules the lost
        run's group on another node, where it would hold the CPUs the retry's workers need."""
        self.track([trial.trial_id])

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.reap()

    def reap(self, wait_s: float = 0.0) -> list[str]:
        """Removes the groups of dead controllers, waiting up to ``wait_s`` for the others.

        Returns the ids of the groups removed here (already removed ones are not counted).
        """
        removed = []
        deadline = time.monotonic() + wait_s
        while True:
            for record in [r for r in self.pending if actor_dead(r.controller)]:
                self.pending.remove(record)
                if remove_if_present(record.group):
                    removed.append(record.group)
                forget_group(record.run_name, record.controller)
            if not self.pending or time.monotonic() >= deadline:
                return removed
            time.sleep(POLL_S)


def reap_orphans() -> list[str]:
    """Removes every recorded group on the cluster whose controller is dead, whichever search
    or reference job started it: such a group can only hold CPUs nothing will use. Returns the
    ids of the groups removed now."""
    removed = []
    for (run_name, controller), group in every_recorded_group().items():
        if actor_dead(controller):
            if remove_if_present(group):
                removed.append(group)
            forget_group(run_name, controller)
    return removed
