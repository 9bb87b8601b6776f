"""Specification of constrained best-epoch selection: feasible first, then the objective."""

from __future__ import annotations

import pytest

from clear_ray.config import SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.train.selection import BestEpoch, Thresholds

THRESHOLDS = Thresholds(objective="log_forget_quality", min_retain_metric=0.45)


def metrics(objective: float, retain: float, forget: float = 0.3) -> dict[str, float]:
    return {
        "log_forget_quality": objective,
        "clear/retain_metric": retain,
        "clear/forget_metric": forget,
    }


def best_of(*epochs: dict[str, float]) -> BestEpoch:
    best = BestEpoch(THRESHOLDS)
    for epoch, values in enumerate(epochs):
        best.update(epoch, values)
    return best


@pytest.mark.parametrize("retain", [0.45, 0.46, 0.9])
def test_constraint_is_non_positive_when_retain_meets_the_threshold(retain: float) -> None:
    assert THRESHOLDS.constraint(metrics(-5.0, retain)) <= 0


@pytest.mark.parametrize("retain", [0.0, 0.3, 0.449])
def test_constraint_is_positive_when_retain_falls_short(retain: float) -> None:
    assert THRESHOLDS.constraint(metrics(-5.0, retain)) > 0


def test_constraint_is_the_shortfall_of_retain_metric() -> None:
    assert THRESHOLDS.constraint(metrics(-5.0, 0.30)) == pytest.approx(0.15)
    assert THRESHOLDS.constraint(metrics(-5.0, 0.60)) == pytest.approx(-0.15)


def test_first_epoch_is_always_recorded() -> None:
    best = BestEpoch(THRESHOLDS)
    assert best.update(0, metrics(-80.0, 0.0))
    assert best.epoch == 0


def test_feasible_epoch_beats_an_infeasible_one_with_a_higher_objective() -> None:
    assert best_of(metrics(0.0, 0.1), metrics(-700.0, 0.5)).epoch == 1
    assert best_of(metrics(-700.0, 0.5), metrics(0.0, 0.1)).epoch == 0


def test_among_feasible_epochs_the_higher_objective_wins() -> None:
    assert best_of(metrics(-20.0, 0.9), metrics(-3.0, 0.5), metrics(-10.0, 0.7)).epoch == 1


def test_among_infeasible_epochs_the_smaller_violation_wins() -> None:
    # The objective does not matter while no epoch is feasible.
    assert best_of(metrics(-1.0, 0.1), metrics(-60.0, 0.4), metrics(-2.0, 0.2)).epoch == 1


def test_a_tie_keeps_the_earlier_epoch() -> None:
    best = BestEpoch(THRESHOLDS)
    best.update(0, metrics(-4.0, 0.5))
    assert not best.update(1, metrics(-4.0, 0.8))
    assert best.epoch == 0


def test_update_reports_whether_the_epoch_became_the_best() -> None:
    best = BestEpoch(THRESHOLDS)
    assert best.update(0, metrics(-10.0, 0.5))
    assert not best.update(1, metrics(-12.0, 0.5))
    assert best.update(2, metrics(-8.0, 0.5))


def test_recorded_metrics_are_a_copy() -> None:
    values = metrics(-4.0, 0.5)
    best = BestEpoch(THRESHOLDS)
    best.update(0, values)
    values["log_forget_quality"] = 0.0
    assert best.metrics["log_forget_quality"] == -4.0


def test_summary_reports_the_best_epoch_and_its_feasibility() -> None:
    best = best_of(metrics(-9.0, 0.8, forget=0.5), metrics(-3.0, 0.6, forget=0.2))
    assert best.summary() == pytest.approx(
        {
            "best_epoch": 1.0,
            "best_objective": -3.0,
            "best_score": -3.0,
            "best_clear/retain_metric": 0.6,
            "best_clear/forget_metric": 0.2,
            "best_log_forget_quality": -3.0,
            "best_constraint": -0.15,
            "best_constraint/min_retain": -0.15,
            "feasible": 1.0,
        }
    )


def test_summary_reports_infeasible_when_no_epoch_met_the_threshold() -> None:
    summary = best_of(metrics(-1.0, 0.1), metrics(-2.0, 0.3)).summary()
    assert summary["best_epoch"] == 1.0
    assert summary["best_objective"] == -2.0
    assert summary["feasible"] == 0.0
    assert summary["best_constraint"] == pytest.approx(0.15)


def test_epoch_values_describe_this_epoch_not_the_best() -> None:
    best = best_of(metrics(-3.0, 0.9))
    values = best.epoch_values(metrics(-50.0, 0.2))
    assert values["constraint"] == pytest.approx(0.25)
    assert values["epoch_feasible"] == 0.0
    assert best.epoch == 0  # epoch_values does not update


def test_feasible_epoch_score_is_its_objective() -> None:
    values = BestEpoch(THRESHOLDS).epoch_values(metrics(-7.5, 0.5))
    assert values["epoch_feasible"] == 1.0
    assert values["constraint"] == pytest.approx(-0.05)
    assert values["epoch_score"] == -7.5


def test_infeasible_epoch_scores_below_any_feasible_one() -> None:
    best = BestEpoch(THRESHOLDS)
    # log p-values bottom out near -745 (float underflow).
    worst_feasible = best.epoch_values(metrics(-745.0, 0.45))["epoch_score"]
    barely_infeasible = best.epoch_values(metrics(0.0, 0.4499))["epoch_score"]
    assert barely_infeasible < worst_feasible


def test_infeasible_epoch_score_falls_with_the_violation() -> None:
    best = BestEpoch(THRESHOLDS)
    small = best.epoch_values(metrics(-1.0, 0.4))["epoch_score"]
    large = best.epoch_values(metrics(-1.0, 0.1))["epoch_score"]
    assert large < small


def utility_metrics(objective: float, retain: float, utility: float) -> dict[str, float]:
    return {**metrics(objective, retain), "clear/model_utility": utility}


def test_utility_constraint_joins_retain_and_the_largest_shortfall_decides() -> None:
    thresholds = Thresholds("log_forget_quality", min_retain_metric=0.45, min_model_utility=0.5)
    values = utility_metrics(-3.0, retain=0.6, utility=0.2)
    assert thresholds.constraints(values) == pytest.approx(
        {"min_retain": -0.15, "min_utility": 0.3}
    )
    assert thresholds.constraint(values) == pytest.approx(0.3)
    summary = BestEpoch(thresholds)
    summary.update(0, values)
    assert summary.summary()["feasible"] == 0.0
    assert summary.summary()["best_constraint/min_utility"] == pytest.approx(0.3)


ORIGINAL = {"clear/retain_metric": 0.8, "clear/model_utility": 0.5}


def test_relative_thresholds_scale_original_values() -> None:
    search = SearchConfig(min_retain=0.9, min_utility=0.5, retain_floor=0.25)
    thresholds = Thresholds.from_search(search, ORIGINAL)
    assert thresholds.min_retain_metric == pytest.approx(0.72)
    assert thresholds.min_model_utility == pytest.approx(0.25)
    assert thresholds.retain_floor == pytest.approx(0.2)


def test_absolute_thresholds_are_taken_as_given() -> None:
    search = SearchConfig(threshold_mode="absolute", min_retain=0.3, min_utility=0.1)
    thresholds = Thresholds.from_search(search, ORIGINAL)
    assert (thresholds.min_retain_metric, thresholds.min_model_utility) == (0.3, 0.1)


def test_no_utility_constraint_by_default() -> None:
    thresholds = Thresholds.from_search(SearchConfig(), ORIGINAL)
    assert thresholds.min_model_utility is None
    assert set(thresholds.constraints(metrics(-1.0, 0.9))) == {"min_retain"}


def test_relative_utility_threshold_needs_originals_utility() -> None:
    with pytest.raises(ConfigError, match="model_utility"):
        Thresholds.from_search(SearchConfig(min_utility=0.5), {"clear/retain_metric": 0.8})


def test_constraints_use_clears_columns_by_default_and_the_extended_ones_when_chosen() -> None:
    original = {**ORIGINAL, "retain_metric": 0.4, "model_utility": 0.2}
    trial = {"clear/retain_metric": 0.7, "clear/model_utility": 0.1}
    trial |= {"retain_metric": 0.39, "model_utility": 0.15}
    default = Thresholds.from_search(SearchConfig(min_retain=0.9, min_utility=0.5), original)
    assert default.constraints(trial) == pytest.approx(
        {"min_retain": 0.72 - 0.7, "min_utility": 0.25 - 0.1}
    )
    extended = SearchConfig(
        min_retain=0.9,
        min_utility=0.5,
        retain_metric="retain_metric",
        utility_metric="model_utility",
    )
    chosen = Thresholds.from_search(extended, original)
    assert chosen.constraints(trial) == pytest.approx(
        {"min_retain": 0.36 - 0.39, "min_utility": 0.1 - 0.15}
    )
    assert chosen.describe() == "retain_metric >= 0.36 and model_utility >= 0.1"
    assert chosen.collapsed({"retain_metric": 0.19}) and not default.collapsed(trial)


def test_collapse_is_retain_below_the_floor() -> None:
    thresholds = Thresholds("log_forget_quality", min_retain_metric=0.45, retain_floor=0.2)
    assert thresholds.collapsed(metrics(-1.0, 0.19))
    assert not thresholds.collapsed(metrics(-1.0, 0.2))


def test_state_round_trip_restores_the_best_epoch() -> None:
    best = best_of(metrics(-9.0, 0.8), metrics(-3.0, 0.6))
    restored = BestEpoch(THRESHOLDS)
    restored.restore(best.state())
    assert restored.epoch == 1
    assert not restored.update(2, metrics(-4.0, 0.9))
