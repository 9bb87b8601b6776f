"""Where a Train run's workers' placement group is recorded, for the search driver to free.

Why (Ray 2.60): GCS keeps a non-detached placement group until its creator actor *and* its job
are dead. When Tune ends a trial actor while ``trainer.fit()`` runs there (ASHA's stop, the
collapse stopper, a lost node), the Train controller dies with it, often before it removed its
workers' group, and the search (the job) lives on: the group holds its CPUs for ever.

Train's own remedy is a detached ``PlacementGroupCleaner`` actor per run
(Train's ``placement_group_callback.py``) that polls the dashboard's
State API every second: one more Ray process per run, ~2.6 s of CPU taken from the trials
beside it on a CPU machine (sampled per process in the demo; bench/run_overhead.py
measures it with Train's Ray Data actor).

Instead, the controller records each worker group it starts in GCS's key-value store, under
``<run name>/<controller actor id>``, and deletes the record once it has shut that group down
itself. A record that is left names a group whose controller died first; the search driver's
``TrainGroupReaper`` (``runtime/cleanup.py``) removes such a group when its trial ends, as soon
as GCS says the controller is dead. Nothing polls, and no dashboard is needed.
"""

from __future__ import annotations

import ray

from clear_ray.runtime.ray_compat import WorkerGroupCallback, kv_del, kv_get, kv_keys, kv_put

NAMESPACE = "clear_ray.train_groups"


def _key(run_name: str, controller: str) -> bytes:
    return f"{run_name}/{controller}".encode()


def _this_actor() -> str:
    return ray.get_runtime_context().get_actor_id()


class GroupRecorder(WorkerGroupCallback):
    """Runs in the Train controller: records each worker group's placement group while it lives."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name

    def after_worker_group_start(self, worker_group) -> None:
        group = worker_group.get_worker_group_state().placement_group_handle.placement_group
        kv_put(_key(self.run_name, _this_actor()), group.id.hex(), NAMESPACE)

    def after_worker_group_shutdown(self, worker_group_context) -> None:
        """Called after the group was removed (also after an abort): nothing is left to free."""
        forget_group(self.run_name, _this_actor())

    after_worker_group_abort = after_worker_group_shutdown


def recorded_groups(run_name: str) -> dict[str, str]:
    """The groups a run's controllers started and did not remove: controller id -> group id."""
    return {
        controller: group
        for (run, controller), group in every_recorded_group(f"{run_name}/").items()
        if run == run_name
    }


def every_recorded_group(prefix: str = "") -> dict[tuple[str, str], str]:
    """Every record on the cluster (any run, any search) whose key starts with ``prefix``:
    (run name, controller id) -> group id."""
    groups = {}
    for key in kv_keys(prefix.encode(), NAMESPACE):
        value = kv_get(key, NAMESPACE)
        if value is not None:
            run_name, controller = key.decode().rsplit("/", 1)
            groups[run_name, controller] = value.decode()
    return groups


def forget_group(run_name: str, controller: str) -> None:
    kv_del(_key(run_name, controller), NAMESPACE)
