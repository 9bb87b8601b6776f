"""Sampler, scheduler and stopping choices; constraints reach Optuna; search state on disk."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from clear_ray.config import SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.runtime.ray_compat import optuna_study
from clear_ray.search.constrained import TUNE_ID_ATTR, ConstrainedOptunaSearch, write_trials_csv
from clear_ray.search.session import MethodRun, SearchDirs, SearchState, find_search
from clear_ray.search.strategy import (
    RetainCollapseStopper,
    build_scheduler,
    grid_size,
    trial_count,
)
from clear_ray.train.keys import BEST_SCORE
from clear_ray.train.selection import Thresholds

GRID = {
    "train.lr": CategoricalDistribution([1e-4, 1e-3, 1e-2]),
    "method.beta": CategoricalDistribution([0.1, 0.5]),
}


def test_grid_size_is_the_product_of_choices() -> None:
    assert grid_size(GRID) == 6


def test_grid_needs_categorical_dimensions() -> None:
    space = {**GRID, "method.alpha": FloatDistribution(0.1, 1.0)}
    with pytest.raises(ConfigError, match=r"not categorical: method\.alpha"):
        grid_size(space)


def test_grid_search_runs_each_point_at_most_once() -> None:
    assert trial_count(SearchConfig(sampler="grid", num_samples=100), GRID) == 6
    assert trial_count(SearchConfig(sampler="grid", num_samples=4), GRID) == 4
    assert trial_count(SearchConfig(num_samples=100), GRID) == 100


def test_asha_ranks_trials_by_their_running_best_score_per_epoch() -> None:
    scheduler = build_scheduler(SearchConfig(grace_period=1, reduction_factor=3), epochs=4)
    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler.metric == BEST_SCORE and scheduler._time_attr == "epoch"
    assert isinstance(build_scheduler(SearchConfig(scheduler="none"), epochs=4), FIFOScheduler)


def epochs_run(scheduler, scores: list[list[float]]) -> list[int]:
    """Feeds ``scores[trial][epoch]`` epoch by epoch, trials in turn, until the scheduler says
    STOP (a trial's last epoch is a STOP too); how many epochs each trial ran."""
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(len(scores))]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    ran = [0] * len(trials)
    stopped = [False] * len(trials)
    for epoch in range(len(scores[0])):
        for index, (trial, curve) in enumerate(zip(trials, scores, strict=True)):
            if stopped[index]:
                continue
            result = {"epoch": epoch + 1, BEST_SCORE: curve[epoch]}
            ran[index] = epoch + 1
            stopped[index] = scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP
    return ran


def test_the_default_grace_period_lets_a_slow_starter_reach_epoch_2() -> None:
    """The search-efficiency replay's finding (bench/RESULTS.md): good dpo trials sit at
    Original's value after epoch 1; grace 1 stops them there, the default grace 2 does not."""
    curves = [[5.0, 5.0, 5.0], [1.0, 9.0, 9.0], [0.5, 0.5, 0.5]]  # the second starts slowly
    grace_1 = build_scheduler(SearchConfig(grace_period=1, reduction_factor=2), epochs=3)
    assert epochs_run(grace_1, curves) == [3, 1, 1]
    default = build_scheduler(SearchConfig(), epochs=3)
    assert epochs_run(default, curves) == [3, 3, 2]  # compared at epoch 2 only


def test_a_grace_period_of_at_least_the_epochs_stops_no_trial() -> None:
    scheduler = build_scheduler(SearchConfig(grace_period=3, reduction_factor=2), epochs=2)
    assert epochs_run(scheduler, [[9.0, 9.0], [1.0, 1.0], [0.5, 0.5]]) == [2, 2, 2]


def test_retain_collapse_stopper_stops_below_the_floor_only() -> None:
    stopper = RetainCollapseStopper(Thresholds("log_forget_quality", 0.5, retain_floor=0.3))
    assert stopper("t", {"clear/retain_metric": 0.29})
    assert not stopper("t", {"clear/retain_metric": 0.31})
    assert not stopper("t", {"retain_metric": 0.29})  # not the metric the floor applies to
    assert not stopper("t", {"training_iteration": 1})  # not an evaluation report
    assert not stopper.stop_all()


def test_constraints_and_values_reach_the_optuna_study(tmp_path: Path) -> None:
    trials_csv = tmp_path / "optuna_trials.csv"
    searcher = ConstrainedOptunaSearch(
        space=GRID,
        metric="best_objective",
        mode="max",
        storage_url=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="s/dpo",
        trials_csv=str(trials_csv),
        seed=0,
    )
    for trial_id, objective, shortfall in (("a", -3.0, 0.2), ("b", -9.0, -0.1)):
        searcher.suggest(trial_id)
        result = {"best_objective": objective, "best_constraint/min_retain": shortfall}
        searcher.on_trial_complete(trial_id, result)
    study_trials = optuna_study(searcher).trials
    assert [t.constraints for t in study_trials] == [{"min_retain": 0.2}, {"min_retain": -0.1}]
    assert [t.values for t in study_trials] == [[-3.0], [-9.0]]
    with trials_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["feasible"] for row in rows] == ["False", "True"]
    assert [row["tune_trial_id"] for row in rows] == ["a", "b"]
    assert [float(row["best_objective"]) for row in rows] == [-3.0, -9.0]
    assert [float(row["constraint/min_retain"]) for row in rows] == [0.2, -0.1]
    assert all(float(row[name]) in GRID[name].choices for row in rows for name in GRID)


def test_optuna_trials_csv_has_a_number_per_cell_and_the_run_ids(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize"])
    trial = optuna.trial.create_trial(
        params={"train.lr": 1.25e-3, "method.loss": "sigmoid"},
        distributions={
            "train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
            "method.loss": optuna.distributions.CategoricalDistribution(["sigmoid", "ipo"]),
        },
        values=[-2.5],
        user_attrs={TUNE_ID_ATTR: "ab12c"},
        constraints={"min_retain": 0.1},
    )
    study.add_trial(trial)
    path = tmp_path / "optuna_trials.csv"
    write_trials_csv(study, path, ["best_objective"], {"ab12c": "run42"})
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {
            "number": "0",
            "tune_trial_id": "ab12c",
            "mlflow_run_id": "run42",
            "state": "COMPLETE",
            "best_objective": "-2.5",
            "feasible": "False",
            "constraint/min_retain": "0.1",
            "method.loss": "sigmoid",
            "train.lr": "0.00125",
        }
    ]


def test_search_state_round_trips_and_latest_is_found(tmp_path: Path) -> None:
    first = SearchDirs(tmp_path, "dpo-1")
    state = SearchState("dpo-1", {"train.lr": 1e-3}, ["dpo"], {"dpo": "dpo.yaml"})
    state.runs["dpo"] = MethodRun("run-1", "done", {"model": "dpo", "metrics": {"x": math.pi}})
    first.save(state)
    assert first.load() == state
    second = SearchDirs(tmp_path, "ga-2")
    second.save(SearchState("ga-2", {}, ["ga"], {"ga": "ga.yaml"}))
    assert find_search(tmp_path, "latest").root == second.root
    assert find_search(tmp_path, "dpo-1").root == first.root
    with pytest.raises(ConfigError, match=r"no search named .x.*dpo-1, ga-2"):
        find_search(tmp_path, "x")


def node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, "GPU": gpus}}


@pytest.mark.parametrize(
    ("nodes", "settings", "expected"),
    [
        ([node(2)], {}, 2),  # the 2-core default: both cores, not one (the driver holds none)
        ([node(2)], {"max_concurrent": 1}, 1),  # a value given wins
        ([node(2)], {"cpus_per_worker": 4.0}, 1),  # too small a node still runs one
        ([node(16, 4), node(16, 4)], {"gpus_per_trial": 1.0}, 8),  # one trial per GPU
        ([node(16, 4), node(8, 0)], {"gpus_per_trial": 1.0}, 4),  # a CPU-only node holds none
        ([node(8), node(8)], {"workers_per_trial": 4, "cpus_per_worker": 2.0}, 2),
        ([node(3), node(3)], {"workers_per_trial": 2, "cpus_per_worker": 2.0}, 1),  # whole nodes
        ([node(4), node(4, alive=False)], {}, 4),  # a dead node holds nothing
    ],
)
def test_automatic_concurrency_counts_the_trials_the_nodes_hold(
    monkeypatch: pytest.MonkeyPatch, nodes: list[dict], settings: dict, expected: int
) -> None:
    import ray

    from clear_ray.runtime.cluster import concurrent_trials

    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    assert concurrent_trials(SearchConfig(**{"max_concurrent": 0, **settings})) == expected


@pytest.mark.parametrize(
    ("nodes", "settings", "message"),
    [
        ([node(2)], {"gpus_per_trial": 1.0}, "search.gpus_per_trial: 1 needs 1 GPU per trial"),
        ([node(2)], {"workers_per_trial": 512}, "search.workers_per_trial: 512 needs 512 CPU"),
        ([node(2), node(2)], {"workers_per_trial": 5}, "needs 5 CPU per trial"),  # 4 in all
        ([node(8)], {"cpus_per_worker": 4096.0}, "this cluster has 8 CPU (8 on its largest"),
        ([node(2, 1), node(2, alive=False)], {"workers_per_trial": 3}, "has 2 CPU"),
    ],
)
def test_a_trial_shape_the_cluster_can_never_run_is_refused_with_what_it_has(
    monkeypatch: pytest.MonkeyPatch, nodes: list[dict], settings: dict, message: str
) -> None:
    import ray
    from ray._private.state import state

    from clear_ray.runtime.cluster import check_cluster

    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(state, "get_cluster_config", lambda: None)  # no autoscaler
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_cluster(SearchConfig(**settings))


def test_a_trial_shape_that_fits_or_an_autoscaler_may_make_room_for_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray
    from ray._private.state import state

    from clear_ray.runtime.cluster import check_cluster

    monkeypatch.setattr(ray, "nodes", lambda: [node(2, 1), node(2, 1)])
    monkeypatch.setattr(state, "get_cluster_config", lambda: None)
    check_cluster(SearchConfig(workers_per_trial=2, gpus_per_trial=2.0))  # one GPU per node
    monkeypatch.setattr(state, "get_cluster_config", lambda: object())  # an autoscaler's
    check_cluster(SearchConfig(workers_per_trial=512))
