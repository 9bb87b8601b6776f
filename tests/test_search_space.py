"""Specification of search spaces: shipped YAMLs, distributions, one-line errors before Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from clear_ray.config import Config, field_paths
from clear_ray.errors import ConfigError
from clear_ray.search.space import (
    SEARCH_SPACE_DIR,
    load_space,
    parse_defaults,
    parse_space,
)

SHIPPED = sorted(path.stem for path in SEARCH_SPACE_DIR.glob("*.yaml"))


def parse_error(raw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_space(raw, "space.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_shipped_spaces_include_dpo_ga_and_gd() -> None:
    assert {"dpo", "ga", "gd"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_loads_and_addresses_real_config_paths(name: str) -> None:
    space = load_space(name)
    assert space
    assert set(space) <= set(field_paths())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_bound_is_accepted_by_its_config_field(name: str) -> None:
    for path, distribution in load_space(name).items():
        values = (
            distribution.choices
            if isinstance(distribution, CategoricalDistribution)
            else (distribution.low, distribution.high)
        )
        for value in values:
            Config().replace({path: value})


def test_loguniform_becomes_a_log_float_distribution() -> None:
    space = parse_space(
        {"train.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}}, "s"
    )
    assert space["train.lr"] == FloatDistribution(1e-4, 1e-2, log=True)


def test_uniform_becomes_a_linear_float_distribution() -> None:
    space = parse_space({"method.beta": {"distribution": "uniform", "low": 0.1, "high": 0.5}}, "s")
    assert space["method.beta"] == FloatDistribution(0.1, 0.5, log=False)


def test_yaml_scientific_notation_strings_are_read_as_numbers() -> None:
    # PyYAML reads "1e-4" (no dot) as a string; the bound must still be a number.
    space = parse_space({"train.lr": {"distribution": "loguniform", "low": "1e-4", "high": 1}}, "s")
    assert space["train.lr"] == FloatDistribution(1e-4, 1.0, log=True)


def test_int_becomes_an_int_distribution() -> None:
    space = parse_space({"train.epochs": {"distribution": "int", "low": 1, "high": 5}}, "s")
    assert space["train.epochs"] == IntDistribution(1, 5)


def test_categorical_becomes_a_categorical_distribution() -> None:
    raw = {"regularizer.l1_targets": {"distribution": "categorical", "choices": ["ab", "b"]}}
    space = parse_space(raw, "s")
    assert space["regularizer.l1_targets"] == CategoricalDistribution(["ab", "b"])


def test_unknown_path_is_a_one_line_error_naming_it() -> None:
    message = parse_error({"train.learning_rate": {"distribution": "uniform", "low": 0, "high": 1}})
    assert "train.learning_rate" in message


def test_section_path_is_rejected() -> None:
    message = parse_error({"train": {"distribution": "uniform", "low": 0, "high": 1}})
    assert "'train'" in message


def test_unknown_distribution_kind_is_a_one_line_error_naming_it() -> None:
    message = parse_error({"train.lr": {"distribution": "normal", "low": 0, "high": 1}})
    assert "normal" in message
    assert "train.lr" in message


@pytest.mark.parametrize(("low", "high"), [(0.5, 0.5), (0.9, 0.1)])
def test_low_not_below_high_is_a_one_line_error(low: float, high: float) -> None:
    message = parse_error({"method.beta": {"distribution": "uniform", "low": low, "high": high}})
    assert "low must be below high" in message
    assert "method.beta" in message


@pytest.mark.parametrize("low", [0.0, -1e-3])
def test_loguniform_with_non_positive_low_is_a_one_line_error(low: float) -> None:
    message = parse_error({"train.lr": {"distribution": "loguniform", "low": low, "high": 1e-2}})
    assert "low > 0" in message
    assert "train.lr" in message


def test_missing_distribution_key_is_a_one_line_error() -> None:
    message = parse_error({"train.lr": {"low": 1e-4, "high": 1e-2}})
    assert "'distribution'" in message
    assert "train.lr" in message


def test_missing_bound_is_a_one_line_error_naming_it() -> None:
    message = parse_error({"train.lr": {"distribution": "uniform", "low": 1e-4}})
    assert "'high'" in message


def test_non_numeric_bound_is_a_one_line_error() -> None:
    message = parse_error({"train.lr": {"distribution": "uniform", "low": "small", "high": 1}})
    assert "low must be a number" in message


def test_categorical_without_choices_is_a_one_line_error() -> None:
    message = parse_error({"regularizer.l1_targets": {"distribution": "categorical"}})
    assert "choices" in message


def test_categorical_choice_the_field_cannot_take_is_a_one_line_error() -> None:
    message = parse_error({"train.epochs": {"distribution": "categorical", "choices": ["x"]}})
    assert "train.epochs" in message
    assert "'x'" in message


def test_float_distribution_on_an_int_field_is_rejected() -> None:
    message = parse_error({"train.epochs": {"distribution": "uniform", "low": 1, "high": 5}})
    assert "train.epochs" in message


def test_int_distribution_with_non_integral_bound_is_rejected() -> None:
    message = parse_error({"train.epochs": {"distribution": "int", "low": 1.5, "high": 4}})
    assert "train.epochs" in message


@pytest.mark.parametrize("raw", [{}, None, ["train.lr"]])
def test_space_that_is_not_a_non_empty_mapping_is_a_one_line_error(raw: Any) -> None:
    assert "non-empty mapping" in parse_error(raw)


def test_error_names_where_the_space_came_from() -> None:
    assert parse_error({"nope": {}}).startswith("space.yaml:")


def test_load_space_reads_a_space_from_another_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "train.lr: {distribution: loguniform, low: 1.0e-5, high: 1.0e-3}\n"
        "method.alpha: {distribution: categorical, choices: [0.5, 1.0]}\n"
    )
    assert load_space("mine", tmp_path) == {
        "train.lr": FloatDistribution(1e-5, 1e-3, log=True),
        "method.alpha": CategoricalDistribution([0.5, 1.0]),
    }


def test_invalid_yaml_is_a_one_line_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("train.lr: {distribution: loguniform, low: 1.0e-4\nmethod.beta: [\n")
    with pytest.raises(ConfigError) as caught:
        load_space("broken", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message


def test_errors_in_a_loaded_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("train.lrr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    with pytest.raises(ConfigError) as caught:
        load_space("typo", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    assert "train.lrr" in message


def test_missing_space_is_a_one_line_error_listing_the_available_ones(tmp_path: Path) -> None:
    for name in ("gd", "dpo"):
        (tmp_path / f"{name}.yaml").write_text(
            "train.lr: {distribution: uniform, low: 0, high: 1}\n"
        )
    with pytest.raises(ConfigError) as caught:
        load_space("npo", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "npo.yaml" in message
    assert "available: dpo, gd" in message


def test_missing_shipped_space_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_space("no_such_method")
    message = str(caught.value)
    assert "\n" not in message
    assert all(name in message for name in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_dimension_names_its_published_setting_and_source(name: str) -> None:
    import yaml

    raw = yaml.safe_load((SEARCH_SPACE_DIR / f"{name}.yaml").read_text())
    for path, spec in raw.items():
        assert "default" in spec and spec.get("source"), f"{name}: {path}"
    parse_defaults(raw, name)  # each value lies in its own range and suits its field


def test_a_published_setting_outside_its_own_range_is_refused_in_one_line() -> None:
    raw = {"method.beta": {"distribution": "loguniform", "low": 0.5, "high": 10.0, "default": 0.1}}
    with pytest.raises(ConfigError) as caught:
        parse_defaults(raw, "space.yaml")
    assert str(caught.value) == (
        "space.yaml: method.beta: default 0.1 lies outside the dimension's own range"
    )


def test_an_unknown_key_in_a_dimension_is_refused() -> None:
    message = parse_error({"train.lr": {"distribution": "uniform", "low": 0, "high": 1, "dflt": 0}})
    assert "unknown key 'dflt'" in message


def test_default_config_means_the_configs_value_with_its_source() -> None:
    raw = {"train.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2,
                        "default": "config", "source": "the recipe"}}  # fmt: skip
    (published,) = parse_defaults(raw, "space.yaml").values()
    assert published.value is None and published.source == "the recipe"
