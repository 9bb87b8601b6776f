"""A stand-in for a Ray Train controller, shared by the tests of group reaping."""

from __future__ import annotations

import ray
from ray.util.placement_group import placement_group


@ray.remote(num_cpus=0)
class Controller:
    """Stands in for a Train controller: it creates its workers' placement group and records it
    with the recorder ``runtime/trainer.py`` gives every Train run."""

    def start_group(self, run_name: str) -> str:
        from types import SimpleNamespace

        from clear_ray.runtime.groups import GroupRecorder

        group = placement_group([{"CPU": 1}])
        ray.get(group.ready())
        state = SimpleNamespace(placement_group_handle=SimpleNamespace(placement_group=group))
        GroupRecorder(run_name).after_worker_group_start(
            SimpleNamespace(get_worker_group_state=lambda: state)
        )
        return group.id.hex()

    def actor_id(self) -> str:
        return ray.get_runtime_context().get_actor_id()
