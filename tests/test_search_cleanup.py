"""A search never waits silently on resources.

Two causes of the hang, each provoked on a small local Ray: a placement group left behind by a
killed Train controller (reaped by ``TrainGroupReaper``), and workers that can never start (the
trial fails after ``search.worker_start_timeout_s`` with the reason, and the search ends).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from ray import tune
from ray.util.placement_group import placement_group_table
from train_controller import Controller

from clear_ray.config import Config
from clear_ray.runtime.cleanup import RecordedGroup, TrainGroupReaper
from clear_ray.runtime.groups import recorded_groups
from clear_ray.runtime.train_run import trial_run_name
from clear_ray.search.trainable import trial_trainable
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.selection import Thresholds


@pytest.fixture(scope="module")
def local_ray():
    # No dashboard: the reaper must not depend on the State API.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def group_state(group_id: str) -> str:
    return placement_group_table()[group_id]["state"]


class FakeTrial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_group_of_a_killed_controller_is_removed_once_it_is_dead(local_ray) -> None:
    killed, alive = Controller.remote(), Controller.remote()
    killed_group, alive_group = ray.get(
        [
            killed.start_group.remote(trial_run_name("killed")),
            alive.start_group.remote(trial_run_name("alive")),
        ]
    )
    alive_id = ray.get(alive.actor_id.remote())
    assert recorded_groups(trial_run_name("alive")) == {alive_id: alive_group}
    reaper = TrainGroupReaper()
    for trial_id in ("killed", "alive", "never-started"):
        reaper.on_trial_complete(0, [], FakeTrial(trial_id))
    ray.kill(killed)
    time.sleep(2)
    # What Ray does on its own while the job lives: the group outlives its creator.
    assert group_state(killed_group) == "CREATED"

    removed, deadline = [], time.monotonic() + 30
    while not removed and time.monotonic() < deadline:  # reap waits for the live one till then
        removed = reaper.reap(wait_s=1)
    assert removed == [killed_group]
    assert group_state(killed_group) == "REMOVED"
    assert recorded_groups(trial_run_name("killed")) == {}  # its record goes with it
    # A live controller keeps its group: it would take the lost workers for a crash.
    assert group_state(alive_group) == "CREATED"
    assert reaper.pending == [RecordedGroup(trial_run_name("alive"), alive_id, alive_group)]
    ray.kill(alive)
    assert reaper.reap(wait_s=30) == [alive_group]


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


def test_a_retried_trials_old_group_is_queued_for_removal(local_ray) -> None:
    """Tune retries a trial whose node was lost; the lost run's group, rescheduled by GCS onto
    a live node, must not keep the retry's workers from starting."""
    lost = Controller.remote()
    group = ray.get(lost.start_group.remote(trial_run_name("retried")))
    reaper = TrainGroupReaper()
    reaper.on_trial_recover(0, [], FakeTrial("retried"))
    assert [record.group for record in reaper.pending] == [group]
    ray.kill(lost)
    assert reaper.reap(wait_s=30) == [group]
