"""Driver-side tasks never wait for ever to start: an orphaned worker group is removed while
they wait, a group nobody can remove fails them with one line naming it, and a long task with
others queued behind it is not mistaken for a stall."""

from __future__ import annotations

import time

import pytest
import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from train_controller import orphaned_group

from clear_ray.config import Config
from clear_ray.runtime.driver_tasks import TaskStartTimeout, each_result, trial_task

LIMIT_S = 8.0
# Long enough for a new worker process to boot on a loaded machine: a task holding its CPU
# while its worker starts has not announced its start yet.
BOOT_S = 60.0


@pytest.fixture(scope="module")
def one_cpu_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def search(limit_s: float = LIMIT_S):
    return Config().replace({"search.worker_start_timeout_s": limit_s}).search


def test_a_group_left_by_a_dead_controller_is_removed_and_the_task_runs(one_cpu_ray) -> None:
    group = orphaned_group()
    assert placement_group_table()[group]["state"] == "CREATED"  # it holds the only CPU

    launch = trial_task(pow, search(BOOT_S)).remote(2, 5)  # a function Ray's workers import
    assert dict(each_result({"x": launch}, "a power", search(BOOT_S))) == {"x": 32}
    assert placement_group_table()[group]["state"] == "REMOVED"


def test_a_group_held_for_good_fails_the_wait_with_one_line_naming_it(one_cpu_ray) -> None:
    held = placement_group([{"CPU": 1}])  # created by this driver, alive: nothing may remove it
    ray.get(held.ready())
    try:
        launch = trial_task(pow, search()).remote(2, 1)
        started = time.monotonic()
        with pytest.raises(TaskStartTimeout) as raised:
            dict(each_result({"x": launch}, "the final evaluation", search()))
        waited = time.monotonic() - started
    finally:
        remove_placement_group(held)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the final evaluation: 1 task(s) could not start within 8 s")
    assert "free now {'CPU': 0.0}" in message
    assert f"{held.id.hex()[:12]} [{{'CPU': 1.0}}] (created by a driver or task)" in message
    assert LIMIT_S <= waited < LIMIT_S + 10
    # the queued task runs once the group is gone
    assert ray.get(launch.ref) == 2


def test_tasks_queued_behind_a_long_one_are_not_a_stall(one_cpu_ray) -> None:
    limit = search(BOOT_S / 2)
    launches = {
        "long": trial_task(time.sleep, limit).remote(BOOT_S),  # runs past the limit
        "queued": trial_task(pow, limit).remote(2, 3),
    }
    assert list(each_result(launches, "two tasks", limit)) == [("long", None), ("queued", 8)]
