"""bench/search_efficiency.py's pure parts: Ray's ASHA replayed on full curves, trial-epochs to
a target, the spread over seeds, and the markdown section."""

from __future__ import annotations

import json
import math
import random

import pytest
from bench_scripts import load_bench

efficiency = load_bench("search_efficiency")

# Five trials' per-epoch scores (running best), 4 epochs each.
CURVES = [[1, 2, 3, 4], [0, 5, 6, 7], [3, 3, 3, 3], [2, 2.5, 9, 9], [1.5, 1, 1, 1]]


def curve(scores: list[float], feasible_from: int = 1) -> efficiency.TrialCurve:
    reports = [
        {"best_score": value, "best_objective": value, "feasible": epoch >= feasible_from}
        for epoch, value in enumerate(scores, 1)
    ]
    return efficiency.TrialCurve.from_reports(reports)


def test_asha_rungs_follow_rays_formula() -> None:
    assert efficiency.asha_rungs(1, 2, 4) == [1, 2, 4]
    assert efficiency.asha_rungs(1, 2, 5) == [1, 2, 4]
    assert efficiency.asha_rungs(2, 2, 5) == [2, 4]
    assert efficiency.asha_rungs(3, 2, 5) == [3]
    assert efficiency.asha_rungs(1, 3, 5) == [1, 3]


def test_asha_grace_1_stops_at_the_first_epoch_below_the_median() -> None:
    # T1 (0 at epoch 1) is below T0's 1: stopped at once, though it would reach 7.
    # T4: epoch 1 ties the median 1.5 (not below), epoch 2 (1) is below 2.5: stopped.
    assert efficiency.asha_stops(CURVES, 1, 2, 4) == [4, 1, 4, 4, 2]


def test_asha_grace_2_lets_slow_starters_through_but_compares_at_epoch_2() -> None:
    # T1 survives now; T3 (2.5 at epoch 2, later 9) is below the median 3 and stopped.
    assert efficiency.asha_stops(CURVES, 2, 2, 4) == [4, 4, 2, 2, 2]


def test_asha_never_stops_a_trial_that_ended_by_itself_before_a_rung() -> None:
    # A collapsed trial (one epoch) still counts at rung 1 for later trials.
    assert efficiency.asha_stops([[5], [1, 1, 1]], 1, 2, 3) == [1, 1]


def test_epochs_until_counts_in_trial_order_until_the_target() -> None:
    assert efficiency.epochs_until([4, 1, 4], [0.5, 0.9, 0.95], 0.9) == 5
    assert efficiency.epochs_until([4, 1], [0.5, 0.8], 0.9) is None


def test_best_at_is_the_feasible_running_best_at_that_epoch() -> None:
    late = curve([1, 2, 3], feasible_from=3)
    assert late.best_at(2) == -math.inf
    assert late.best_at(3) == 3
    assert late.best_at(0) == -math.inf


def test_replay_reports_cost_and_whether_the_grid_best_survives() -> None:
    curves = [curve(values) for values in CURVES]
    grace1 = efficiency.replay(curves, 1, 2, 4)
    assert grace1["trial_epochs"] == 4 + 1 + 4 + 4 + 2
    assert grace1["best_feasible_objective"] == 9  # T3 runs to the end
    assert grace1["grid_best_kept"] is True
    assert grace1["trial_epochs_to_target"] == 4 + 1 + 4 + 4
    grace2 = efficiency.replay(curves, 2, 2, 4)
    assert grace2["best_feasible_objective"] == 7  # T3 stopped at 2.5
    assert grace2["grid_best_kept"] is False
    assert grace2["trial_epochs_to_target"] is None


def test_spread_is_over_the_runs_that_reached_a_value() -> None:
    stats = efficiency.spread([12, None, 30, 18])
    assert stats == {"reached": 3, "runs": 4, "median": 18, "min": 12, "max": 30}
    assert efficiency.spread([None])["median"] is None


def test_markdown_shows_original_next_to_the_grid_best_and_flags_lost_bests() -> None:
    curves = [curve(values) for values in CURVES]
    grid = efficiency.run_summary(curves, [4] * 5, 9)
    tpe = {
        "best": efficiency.spread([9, 7]),
        "epochs_to_grid_best": efficiency.spread([12, None]),
        "ratio": efficiency.spread([12 / 20, None]),
    }
    record = {
        "objective": "forget_quality_js",
        "epochs": 4,
        "grid_size": 5,
        "tpe_samples": 5,
        "seeds": [0, 1],
        "methods": {
            "idk": {
                "original": 0.7585,
                "gold": 1.0,
                "grid": grid,
                "tpe": {"TPE + ASHA (grace 2, factor 2)": tpe},
                "asha_replay": [efficiency.replay(curves, 2, 2, 4)],
            }
        },
        "json": "x.json",
        "machine": "test",
    }
    text = efficiency.efficiency_markdown(record)
    assert "| idk | 0.7585 | 1 | 9 | 20 (its best at 16) | TPE + ASHA (grace 2, factor 2) |" in text
    assert "| 8 [7–9] (2/2) | 12 [12–12] (1/2) | 0.6 [0.6–0.6] (1/2) |" in text
    assert "| idk | 2 | 2 | 2, 4 | 14 (20) | 7 | **no** | – |" in text


@pytest.mark.parametrize("argv", [["--smoke"], []])
def test_plan_has_one_grid_and_a_tpe_run_per_seed_and_setting(argv) -> None:
    args = efficiency.parse_args([*argv, "--asha", "1:2,2:3"])
    planned = efficiency.plan(args, args.grid_size)
    per_method = 1 + 2 * len(args.seeds)
    assert len(planned) == per_method * len(args.methods)
    seeds = {item.config.get("search.seed") for item in planned if item.label != "grid"}
    assert seeds == set(args.seeds)
    assert {item.config.get("search.grace_period") for item in planned} == {None, 1, 2}


def test_trial_curves_are_read_in_trial_creation_order(tmp_path) -> None:
    searches = load_bench("searches")
    for folder, scores in (
        ("run_trial_def34567_2_lr=0.001_2026-12-01_11-49-14", [0.5]),
        ("run_trial_abc12345_1_lr=0.003_2026-12-01_11-48-48", [0.7, 0.8]),
    ):
        trial = tmp_path / "ray" / "gd" / folder
        trial.mkdir(parents=True)
        lines = [json.dumps({"epoch": e, "best_score": v}) for e, v in enumerate(scores, 1)]
        (trial / "result.json").write_text("\n".join(lines) + "\n")
    curves = searches.trial_curves(tmp_path, "gd")
    assert [[report["best_score"] for report in reports] for reports in curves] == [
        [0.7, 0.8],
        [0.5],
    ]


@pytest.mark.parametrize("grace,factor,max_t", [(1, 2, 5), (2, 2, 5), (3, 2, 5), (1, 3, 4)])
def test_asha_replay_agrees_with_rays_scheduler(grace, factor, max_t) -> None:
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    rng = random.Random(grace * 10 + max_t)
    curves = []
    for _ in range(30):
        # few distinct values, as a KS p-value on few items has: ties decide stops too
        values = [rng.choice([0, 1, 2, 3]) for _ in range(rng.choice([max_t, max_t, 2]))]
        curves.append([max(values[: i + 1]) for i in range(len(values))])  # running best
    scheduler = ASHAScheduler(
        time_attr="epoch", metric="score", mode="max", max_t=max_t,
        grace_period=grace, reduction_factor=factor,
    )  # fmt: skip
    ray_stops = []
    for number, scores in enumerate(curves):
        trial = SimpleNamespace(trial_id=f"t{number}")
        scheduler.on_trial_add(None, trial)
        ran = len(scores)
        for epoch, score in enumerate(scores, 1):
            result = {"epoch": epoch, "score": score}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                ran = epoch
                break
        scheduler.on_trial_complete(None, trial, {"epoch": ran, "score": scores[ran - 1]})
        ray_stops.append(ran)
    assert efficiency.asha_stops(curves, grace, factor, max_t) == ray_stops


def test_spaces_load_as_search_spaces_even_with_a_one_value_dimension(tmp_path) -> None:
    from clear_ray.search.space import load_space

    grid, continuous = efficiency.spaces([1e-3, 3e-3], [1.0], [0.0, 1e-3])
    (tmp_path / "grid.yaml").write_text(grid)
    (tmp_path / "tpe.yaml").write_text(continuous)
    grid_space, tpe_space = load_space("grid", tmp_path), load_space("tpe", tmp_path)
    assert grid_space["train.lr"].choices == (1e-3, 3e-3)
    assert (tpe_space["train.lr"].low, tpe_space["train.lr"].high) == (1e-3, 3e-3)
    assert tpe_space["method.alpha"].choices == (1.0,)
