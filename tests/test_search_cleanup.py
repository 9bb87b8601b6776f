"""A search never waits silently on resources.

Two causes of the hang, each provoked on a small local Ray: a placement group left behind by a
dead Train controller (removed by the sweeps of ``runtime/cleanup.py``), and workers that can
never start (the trial fails after ``search.worker_start_timeout_s`` with the reason, and the
search ends).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from ray import tune
from ray.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from train_controller import TrainController, orphaned_group

from clear_ray.config import Config
from clear_ray.runtime.cleanup import TrainGroupReaper, creator_class, reap, reap_orphans
from clear_ray.runtime.ray_compat import PlacementGroupInfo, placement_groups
from clear_ray.search.trainable import trial_trainable
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.selection import Thresholds


@pytest.fixture(scope="module")
def local_ray():
    # No dashboard: the sweeps must not depend on the State API.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def group_state(group_id: str) -> str:
    return placement_group_table()[group_id]["state"]


def test_only_a_dead_controllers_group_is_removed(local_ray) -> None:
    alive = TrainController.remote()
    alive_group = ray.get(alive.start_group.remote())
    orphan = orphaned_group()
    # What Ray does on its own while the job lives: the group outlives its creator.
    assert group_state(orphan) == "CREATED"

    started = time.monotonic()
    assert reap(wait_s=2) == [orphan]  # and waits for the live one till then
    assert time.monotonic() - started >= 2
    assert group_state(orphan) == "REMOVED"
    # A live controller keeps its group: it would take the lost workers for a crash.
    assert group_state(alive_group) == "CREATED"
    ray.kill(alive)
    assert reap(wait_s=30) == [alive_group]  # once it is dead
    assert reap_orphans() == []


def test_a_group_a_driver_holds_is_not_an_orphan(local_ray) -> None:
    held = placement_group([{"CPU": 1}])
    ray.get(held.ready())
    try:
        assert reap_orphans() == []
        assert group_state(held.id.hex()) == "CREATED"
    finally:
        remove_placement_group(held)


def live_groups() -> dict[str, PlacementGroupInfo]:
    return {group.group_id: group for group in placement_groups() if group.live}


def wait_for(condition, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s"
        time.sleep(0.2)
    return value


@pytest.mark.slow
def test_a_train_run_killed_before_its_workers_ran_leaves_a_group_a_sweep_frees(
    local_ray, tmp_path: Path
) -> None:
    """Ray Train's own controller, killed with its trial while its workers' group waits for
    CPUs, leaves the group; GCS creates it once the CPUs are free, and it holds them for ever.
    Nothing ran in the group to record it: the sweep knows it by its dead creator."""

    @ray.remote(num_cpus=0)
    class TrialActor:  # defined here: pickled by value; Tune's trial actor stands in
        def fit(self, storage: str) -> None:
            from clear_ray.config import SearchConfig
            from clear_ray.runtime.train_run import data_parallel_trainer

            def no_training(config: dict) -> None:
                pass

            data_parallel_trainer(no_training, {}, SearchConfig(), "starting", storage).fit()

    held = placement_group([{"CPU": 2}])  # this driver's: the controller's group waits
    ray.get(held.ready())
    trial = TrialActor.remote()
    trial.fit.remote(str(tmp_path))
    (group,) = wait_for(
        lambda: [g for g in live_groups().values() if g.group_id != held.id.hex()],
        "Train worker group",
    )
    assert (group.state, creator_class(group)) == ("PENDING", "TrainController")
    ray.kill(trial)
    wait_for(lambda: live_groups()[group.group_id].creator_dead, "dead controller")
    remove_placement_group(held)
    wait_for(lambda: live_groups()[group.group_id].state == "CREATED", "leaked group")

    assert reap_orphans() == [group.group_id]
    assert group_state(group.group_id) == "REMOVED"


def test_the_tune_callback_removes_orphans(local_ray) -> None:
    """Tune calls it at each step of its loop: a trial Tune starts, or retries after its node
    was lost, gets the CPUs a dead controller's group held."""
    orphan = orphaned_group()
    TrainGroupReaper().on_step_begin(0, [])
    assert group_state(orphan) == "REMOVED"


def test_trial_whose_workers_cannot_start_fails_with_the_reason(local_ray, tmp_path: Path) -> None:
    """More CPUs per worker than this Ray has (the up-front check is bypassed here)."""
    cfg = Config().replace(
        {"search.cpus_per_worker": 8, "search.worker_start_timeout_s": 5, "train.epochs": 1}
    )
    inputs = TrialInputs("unused", "unused", [], Thresholds("log_forget_quality", 0.0))
    trainable = trial_trainable(cfg, inputs, str(tmp_path / "train"))
    started = time.monotonic()
    results = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="t", verbose=0),
    ).fit()
    assert time.monotonic() - started < 300  # ends: no retry without limit
    error = str(results[0].error)
    assert "no resources for 1 worker(s) with {'CPU': 8.0} within 5 s" in error
    assert "search.worker_start_timeout_s" in error


def test_a_trial_drivers_own_error_is_final_and_raised_again_by_a_retry(tmp_path: Path) -> None:
    """Tune retries a trial whose driver died (a lost node); what the driver raised itself
    (here a divergence) comes back at once instead of running the trial again."""
    from clear_ray.search.trainable import FinalError

    outcome = FinalError(str(tmp_path / "train"), "train-t1")
    outcome.raise_if_recorded()  # nothing yet: the trial runs
    outcome.record(FloatingPointError("epoch 2: gd loss became nan"))
    with pytest.raises(FloatingPointError, match="epoch 2: gd loss became nan"):
        FinalError(str(tmp_path / "train"), "train-t1").raise_if_recorded()
    FinalError(str(tmp_path / "train"), "train-t2").raise_if_recorded()  # per trial
