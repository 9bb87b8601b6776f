"""A stand-in for a Ray Train controller, shared by the tests of group reaping."""

from __future__ import annotations

import time

import ray
from ray.util.placement_group import placement_group


@ray.remote(num_cpus=0)
class TrainController:
    """Stands in for Ray Train's controller (the sweeps know it by its class name, as GCS
    gives it: tests/test_backend.py checks the name on a real run). It creates its workers'
    placement group, and nothing else: like a controller killed before its workers ran."""

    def start_group(self) -> str:
        group = placement_group([{"CPU": 1}])
        ray.get(group.ready())
        return group.id.hex()

    def actor_id(self) -> str:
        return ray.get_runtime_context().get_actor_id()


def orphaned_group() -> str:
    """The group of a stand-in controller killed before its workers ran, once GCS has marked
    the controller dead."""
    from clear_ray.runtime.ray_compat import actor_info

    controller = TrainController.remote()
    group = ray.get(controller.start_group.remote())
    controller_id = ray.get(controller.actor_id.remote())
    ray.kill(controller)
    while actor_info(controller_id).get("State") != "DEAD":
        time.sleep(0.1)
    return group
