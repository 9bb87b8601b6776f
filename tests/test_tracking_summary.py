"""What MLflow shows of a search: child metrics that sort, the parent's best/* and Description."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray.config import Config
from clear_ray.tracking import (
    DESCRIPTION_TAG,
    FEASIBLE_OBJECTIVE,
    SearchTracker,
    best_metrics,
    child_metrics,
    search_description,
)
from clear_ray.train.selection import INFEASIBLE_SCORE, Thresholds
from clear_ray.tune import untuned

THRESHOLDS = Thresholds("log_forget_quality", 0.6)


def test_child_metrics_hide_the_schedulers_sentinel_and_mark_feasible_trials() -> None:
    infeasible = {
        "epoch": 2,
        "best_objective": -1.5,
        "best_score": INFEASIBLE_SCORE - 0.1,
        "epoch_score": INFEASIBLE_SCORE - 0.2,
        "feasible": 0.0,
        "clear/retain_metric": 0.5,
    }
    logged = child_metrics(infeasible)
    assert logged == {"best_objective": -1.5, "feasible": 0.0, "clear/retain_metric": 0.5}
    feasible = {**infeasible, "feasible": 1.0, "best_score": -1.5}
    assert child_metrics(feasible)[FEASIBLE_OBJECTIVE] == -1.5
    assert "best_score" not in child_metrics(feasible)


def test_best_metrics_name_the_objective_and_keep_the_table_columns() -> None:
    best = {
        "best_objective": -2.0,
        "best_score": -2.0,
        "best_epoch": 3.0,
        "best_clear/retain_metric": 0.7,
        "best_clear/forget_metric": 0.1,
        "best_constraint/min_retain": -0.1,
    }
    assert best_metrics(best, "clear/log_forget_quality") == {
        "best/clear/log_forget_quality": -2.0,
        "best/epoch": 3.0,
        "best/clear/retain_metric": 0.7,
        "best/clear/forget_metric": 0.1,
        "best/constraint/min_retain": -0.1,
    }


def test_description_names_the_best_trial_and_how_to_open_it() -> None:
    text = search_description(
        "dpo", "log_forget_quality", THRESHOLDS, "ab12c", "run42", {"train.lr": 0.00125}
    )
    assert "**dpo**" in text and "`log_forget_quality`" in text
    assert "clear/retain_metric >= 0.6" in text
    assert "ab12c" in text and "run42" in text and "`train.lr=0.00125`" in text
    assert FEASIBLE_OBJECTIVE in text
    none = search_description("dpo", "log_forget_quality", THRESHOLDS, None, None, {})
    assert "No trial met the thresholds" in none


def test_tuned_parameters_defaults_are_not_logged() -> None:
    params = {"train.lr": 1e-3, "method.beta": 0.1, "train.epochs": 4}
    assert untuned(params, {"train.lr": object()}, {"method.beta": object()}) == {"train.epochs": 4}


def test_description_and_child_ids_reach_the_store(tmp_path: Path) -> None:
    cfg = Config().replace({"output_dir": str(tmp_path)})
    tracker = SearchTracker(cfg)
    parent = tracker.start_parent("s", {"train.epochs": 4}, {})
    child = tracker.start_child("ab12c", {"train.lr": 1e-3})
    tracker.describe(parent, "best: ab12c")
    assert tracker.client.get_run(parent).data.tags[DESCRIPTION_TAG] == "best: ab12c"
    assert tracker.child_ids() == {"ab12c": child}
    assert tracker.run_url(parent) is None  # a local store has no page to link


@pytest.mark.parametrize("uri", ["http://host:5000", "http://host:5000/"])
def test_run_url_on_a_server(uri: str) -> None:
    tracker = SearchTracker.__new__(SearchTracker)
    tracker.uri, tracker.experiment_id = uri, "7"
    assert tracker.run_url("r1") == (
        "http://host:5000/#/experiments/7/runs/r1?workflowType=machine_learning"
    )
