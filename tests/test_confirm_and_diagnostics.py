"""Confirm runs' record (confirm.json) and the winner's diagnostics, on hand-made values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from clear_ray.config import Config
from clear_ray.methods import METHODS
from clear_ray.search.confirm import (
    Configuration,
    ConfirmRun,
    confirm_seeds,
    write_confirm,
)
from clear_ray.search.diagnostics import (
    FoldObjectives,
    diagnostics_metrics,
    edge_dimensions,
    gap_closed,
    optimism,
    top_k_mean,
)
from clear_ray.search.results import LeaderboardRow
from clear_ray.search.space import PublishedDefault, default_params, load_defaults, load_space


def test_confirm_seeds_are_fresh_training_seeds() -> None:
    assert confirm_seeds(0, 3) == [1, 2, 3]
    assert confirm_seeds(7, 2) == [8, 9]
    assert confirm_seeds(0, 0) == []


def test_the_default_configuration_is_the_published_setting_else_the_config_value() -> None:
    config = {"train.lr": 1e-3, "method.beta": 0.1, "train.epochs": 3}
    space = {"method.beta": None, "train.lr": None}
    published = {
        "method.beta": PublishedDefault(2.5, "SimNPO"),
        "train.lr": PublishedDefault(None, "config default"),
    }
    assert default_params(config, space, published) == {"method.beta": 2.5, "train.lr": 1e-3}
    assert default_params(config, space, {}) == {"method.beta": 0.1, "train.lr": 1e-3}


def test_simnpo_rmu_and_llmu_defaults_are_their_papers_not_npos() -> None:
    flat = Config().to_flat()

    def defaults(method: str) -> dict:
        return default_params(flat, load_space(method), load_defaults(method))

    assert defaults("simnpo")["method.beta"] == 2.5  # SimNPO on TOFU, not NPO's 0.1
    assert defaults("rmu")["method.alpha"] == 1200.0  # WMDP, not the config's 1
    assert defaults("llmu")["method.gamma"] == 0.5  # LLMU's epsilon_1
    assert defaults("npo")["train.lr"] == flat["train.lr"]  # no paper lr: the recipe's


def run(seed: int, forget: float, feasible: bool) -> ConfirmRun:
    return ConfirmRun(seed, f"r{seed}", f"a{seed}", {"clear/forget_metric": forget}, feasible)


def test_confirm_json_holds_the_contracts_keys_with_mean_and_sample_sd(tmp_path: Path) -> None:
    tuned = Configuration({"train.lr": 0.001}, 2, "t1", [run(1, 0.2, True), run(2, 0.4, False)])
    default = Configuration({"train.lr": 0.01}, 3, None, [run(1, 0.5, True)])
    path = tmp_path / "dpo" / "confirm.json"
    write_confirm(path, "dpo", [1, 2], {"tuned": tuned, "default": default})
    record = json.loads(path.read_text())
    assert set(record) == {"method", "fold", "seeds", "configurations"}
    assert (record["method"], record["fold"], record["seeds"]) == ("dpo", "report", [1, 2])
    first = record["configurations"]["tuned"]
    assert set(first) == {
        "params", "epochs", "trial", "runs", "mean", "sd", "feasible_fraction"
    }  # fmt: skip
    assert set(first["runs"][0]) == {"seed", "run_id", "adapter", "metrics", "feasible"}
    assert first["mean"]["clear/forget_metric"] == pytest.approx(0.3)
    assert first["sd"]["clear/forget_metric"] == pytest.approx(math.sqrt(0.02))  # n - 1
    assert first["feasible_fraction"] == 0.5
    assert record["configurations"]["default"]["trial"] is None
    assert record["configurations"]["default"]["sd"]["clear/forget_metric"] is None  # one run


def test_a_confirm_row_shows_mean_plus_minus_sd() -> None:
    row = LeaderboardRow("dpo (tuned)", {"clear/forget_metric": 0.3}, "1/2", "t1",
                         {"clear/forget_metric": 0.1414})  # fmt: skip
    assert row.cell("clear/forget_metric") == "0.3 ± 0.14"


def test_top_k_mean_averages_the_k_best_finite_values() -> None:
    assert top_k_mean([-5.0, -1.0, -3.0, -2.0, math.nan], 3) == pytest.approx(-2.0)
    assert top_k_mean([-4.0], 3) == -4.0
    assert math.isnan(top_k_mean([], 3))


def test_gap_closed_is_the_share_of_originals_distance_to_gold() -> None:
    # log FQ (Gold 0): 1 − x/x_Original; 1 − JS (Gold 1): (x − x_O)/(1 − x_O).
    assert gap_closed(FoldObjectives(-1.0, -5.0, 0.0)) == pytest.approx(0.8)
    assert gap_closed(FoldObjectives(0.9, 0.6, 1.0)) == pytest.approx(0.75)
    assert math.isnan(gap_closed(FoldObjectives(-1.0, 0.0, 0.0)))  # no gap on this fold


def test_optimism_normalises_each_fold_by_its_own_original() -> None:
    # The selection fold is harder for Original (−5) than the report fold (−2.5). A winner
    # that closes 80 % of the gap on both has no optimism, though its raw values differ by
    # −0.5 (a raw subtraction would call selection pessimistic).
    selection = FoldObjectives(winner=-1.0, original=-5.0, gold=0.0)
    assert optimism(selection, FoldObjectives(-0.5, -2.5, 0.0)) == pytest.approx(0.0)
    # Closing 80 % on selection and 40 % on report: selection flattered it by 0.4.
    assert optimism(selection, FoldObjectives(-1.5, -2.5, 0.0)) == pytest.approx(0.4)


def test_optimism_is_refused_when_the_per_epoch_evaluation_is_a_proxy() -> None:
    selection, report = FoldObjectives(-1.0, -5.0, 0.0), FoldObjectives(-0.5, -2.5, 0.0)
    full = diagnostics_metrics([-1.0, -2.0], 3, selection, report, proxy=False)
    assert full["diagnostics/optimism"] == pytest.approx(0.0)
    assert full["diagnostics/winner_report_gap_closed"] == pytest.approx(0.8)
    proxied = diagnostics_metrics([-1.0, -2.0], 3, selection, report, proxy=True)
    assert "diagnostics/optimism" not in proxied
    assert proxied["diagnostics/top3_mean_objective"] == pytest.approx(-1.5)


def inside(value: object, distribution: object) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_methods_default_configuration_lies_inside_its_own_space(method: str) -> None:
    # The confirm runs' default row is what the method's paper runs; a value its own space
    # excludes (SimNPO at NPO's β = 0.1 against [0.5, 10]) is no such setting.
    space = load_space(method)
    defaults = default_params(Config().to_flat(), space, load_defaults(method))
    outside = {path: v for path, v in defaults.items() if not inside(v, space[path])}
    assert not outside, f"{method}: defaults outside its search space: {outside}"


def test_bests_in_the_outer_tenth_of_a_range_are_flagged_on_its_own_scale() -> None:
    space = {
        "train.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "method.beta": FloatDistribution(0.0, 1.0),
        "train.epochs": IntDistribution(1, 11),
        "regularizer.l1": CategoricalDistribution([0.0, 0.01]),
    }
    # 1.5e-4 is at 8.8 % of the log range (flagged) though at 0.5 % of the linear one either
    # way; 9e-4 is at 48 % of the log range and 8 % of the linear one: not flagged on log.
    params = {"train.lr": 1.5e-4, "method.beta": 0.95, "train.epochs": 6, "regularizer.l1": 0.0}
    assert edge_dimensions(params, space) == {"train.lr": "low", "method.beta": "high"}
    assert edge_dimensions({**params, "train.lr": 9e-4}, space) == {"method.beta": "high"}


def test_numeric_choices_are_ordered_and_flagged_at_the_top_of_the_grid() -> None:
    space = {"regularizer.l1": CategoricalDistribution([0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2])}
    assert edge_dimensions({"regularizer.l1": 1e-2}, space) == {"regularizer.l1": "high"}
    assert edge_dimensions({"regularizer.l1": 1e-4}, space) == {}  # rank 1 of 0..5
    assert edge_dimensions({"regularizer.l1": 0.0}, space) == {}  # off, nothing below to try
    names = {"method.loss": CategoricalDistribution(["a", "b", "c", "d", "e"])}
    assert edge_dimensions({"method.loss": "e"}, names) == {}  # no order


def test_integer_and_choice_dimensions_need_five_values_to_be_flagged() -> None:
    few = {
        "method.scrub_max_epochs": IntDistribution(1, 3),
        "regularizer.l1": CategoricalDistribution([0.0, 1e-3, 1e-2]),
    }
    assert edge_dimensions({"method.scrub_max_epochs": 3, "regularizer.l1": 1e-2}, few) == {}
    five = {"method.scrub_max_epochs": IntDistribution(1, 5)}
    assert edge_dimensions({"method.scrub_max_epochs": 5}, five) == {
        "method.scrub_max_epochs": "high"
    }
