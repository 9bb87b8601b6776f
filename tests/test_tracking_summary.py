"""What MLflow shows of a search: child metrics that sort, the parent's best/* and Description."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray.config import Config
from clear_ray.pipeline.context import untuned
from clear_ray.tracking import (
    DESCRIPTION_TAG,
    FEASIBLE_OBJECTIVE,
    SearchTracker,
    best_metrics,
    child_metrics,
    search_description,
)
from clear_ray.train.selection import INFEASIBLE_SCORE, Thresholds

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


def test_the_method_run_gets_the_paired_difference_and_verdict(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from clear_ray.pipeline.confirm import log_comparison

    cfg = Config().replace({"output_dir": str(tmp_path)})
    tracker = SearchTracker(cfg)
    parent = tracker.start_parent("s", {"train.epochs": 4}, {})

    def runs(values: dict[int, float]) -> list[dict]:
        return [
            {"seed": s, "metrics": {"log_forget_quality": v}, "feasible": True}
            for s, v in values.items()
        ]

    # Differences 3, 2.7, 2.7: mean 2.8, sd 0.1732, t(0.975, 2) x 0.1 = 0.4303.
    record = {
        "seeds": [1, 2, 3],
        "configurations": {
            "tuned": {"runs": runs({1: -1.0, 2: -1.5, 3: -1.2})},
            "default": {"runs": runs({1: -4.0, 2: -4.2, 3: -3.9})},
        },
    }
    original = SimpleNamespace(metrics={"log_forget_quality": -20.0})
    search = SimpleNamespace(cfg=cfg, tracker=tracker, refs=SimpleNamespace(original_full=original))
    log_comparison(search, "dpo", record)
    data = tracker.client.get_run(parent).data
    assert data.metrics["confirm/pairs"] == 3
    assert data.metrics["confirm/difference_mean"] == pytest.approx(2.8)
    assert data.metrics["confirm/difference_low"] == pytest.approx(2.8 - 0.43027, abs=1e-4)
    assert data.metrics["confirm/difference_high"] == pytest.approx(2.8 + 0.43027, abs=1e-4)
    assert data.metrics["confirm/sign_flip_p"] == 1 / 8
    assert data.tags["confirm.verdict"] == (
        "tuned beat default at 3 seeds (95% t-interval [+2.37, +3.23] above 0)"
    )
    history = tracker.client.get_metric_history(parent, "confirm/difference")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(1, 3.0), (2, 2.7), (3, 2.7)]
