"""Specification of the typed config: dotted paths, coercion, one-line errors."""

from __future__ import annotations

import dataclasses
import re

import pytest

from clear_ray.config import Config, field_paths
from clear_ray.errors import ConfigError


def test_to_flat_then_from_flat_round_trips_the_defaults() -> None:
    config = Config()
    assert Config.from_flat(config.to_flat()) == config


def test_to_flat_then_from_flat_round_trips_changed_values() -> None:
    config = Config().replace({"train.lr": 5e-4, "method.name": "gd", "eval.generate": False})
    restored = Config.from_flat(config.to_flat())
    assert restored == config
    assert restored.to_flat() == config.to_flat()


def test_to_flat_addresses_leaves_by_dotted_path() -> None:
    flat = Config().to_flat()
    assert flat["train.lr"] == Config().train.lr
    assert flat["output_dir"] == Config().output_dir
    assert not any(dataclasses.is_dataclass(value) for value in flat.values())


def test_field_paths_include_the_searched_hyperparameters() -> None:
    paths = field_paths()
    assert {"train.lr", "method.beta", "regularizer.l1"} <= set(paths)


def test_field_paths_are_leaves_not_sections() -> None:
    assert "train" not in field_paths()
    assert "method" not in field_paths()


def test_replace_coerces_scientific_notation_string_to_float() -> None:
    lr = Config().replace({"train.lr": "1e-4"}).train.lr
    assert isinstance(lr, float)
    assert lr == 1e-4


def test_replace_coerces_integer_string_to_int() -> None:
    epochs = Config().replace({"train.epochs": "3"}).train.epochs
    assert isinstance(epochs, int)
    assert epochs == 3


def test_replace_accepts_an_integral_float_for_an_int_field() -> None:
    epochs = Config().replace({"train.epochs": 4.0}).train.epochs
    assert isinstance(epochs, int)
    assert epochs == 4


def test_replace_coerces_int_to_float_for_a_float_field() -> None:
    l1 = Config().replace({"regularizer.l1": 1}).regularizer.l1
    assert isinstance(l1, float)
    assert l1 == 1.0


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("false", False), ("True", True)])
def test_replace_coerces_boolean_strings(text: str, expected: bool) -> None:
    assert Config().replace({"eval.generate": text}).eval.generate is expected


def test_replace_rejects_a_non_boolean_string_for_a_bool_field() -> None:
    with pytest.raises(ConfigError, match=r"eval\.generate"):
        Config().replace({"eval.generate": "maybe"})


@pytest.mark.parametrize("value", [2.5, "2.5"])
def test_replace_rejects_non_integral_value_for_int_field(value: object) -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        Config().replace({"train.epochs": value})


def test_replace_rejects_a_non_numeric_string_for_a_float_field() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr"):
        Config().replace({"train.lr": "fast"})


@pytest.mark.parametrize("path", ["train.learning_rate", "nosuch.lr", "train.lr.extra", "lr"])
def test_replace_rejects_unknown_path_naming_it(path: str) -> None:
    with pytest.raises(ConfigError, match=f"'{path}'"):
        Config().replace({path: 1})


@pytest.mark.parametrize("path", ["train", "method"])
def test_replace_rejects_a_section_path_naming_it(path: str) -> None:
    with pytest.raises(ConfigError, match=f"'{path}'"):
        Config().replace({path: 1})


def test_from_flat_rejects_unknown_path() -> None:
    with pytest.raises(ConfigError, match=r"method\.temperature"):
        Config.from_flat({"method.temperature": 0.5})


def test_replace_does_not_mutate_the_original() -> None:
    original = Config()
    changed = original.replace({"train.lr": "1e-4", "method.beta": 0.5})
    assert original == Config()
    assert changed.train is not original.train
    assert (changed.train.lr, changed.method.beta) == (1e-4, 0.5)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_every_range_names_a_numeric_field_and_holds_its_default() -> None:
    from clear_ray.config import RANGES

    defaults = Config().to_flat()
    for path, valid in RANGES.items():
        assert path in defaults, path
        if defaults[path] is None:  # an optional field, off by default
            continue
        assert defaults[path] in valid, (path, defaults[path], str(valid))
    Config().validate()  # the defaults pass the cross-field checks too


def test_range_bounds_and_inclusivity() -> None:
    from clear_ray.config import Range

    half_open = Range(0, 1.5, low_inclusive=False)
    assert 0 not in half_open and 1e-9 in half_open and 1.5 in half_open and 1.6 not in half_open
    assert float("nan") not in Range()
    assert str(half_open) == "(0, 1.5]" and str(Range(1)) == "[1, inf)"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"search.num_samples": 0}, "search.num_samples: 0 is outside [1, inf)"),
        ({"search.reduction_factor": 1}, "search.reduction_factor: 1.0 is outside (1, inf)"),
        ({"lora.dropout": 1}, "lora.dropout: 1.0 is outside [0, 1)"),
    ],
)
def test_replace_refuses_values_outside_their_range(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config().replace(overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"search.min_retain": 1.6}, "search.min_retain: 1.6 is outside (0, 1.5]"),
        ({"search.min_utility": 2.0}, "search.min_utility: 2.0 is outside (0, 1.5]"),
    ],
)
def test_validate_refuses_impossible_combinations(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config().replace(overrides).validate()


def test_validate_accepts_what_is_only_valid_in_context() -> None:
    # Off switches, absolute thresholds above 1.5, a grace period longer than the epochs
    # (ASHA stops no trial: search/strategy.py), with or without ASHA.
    Config().replace({"search.min_utility": 0, "search.retain_floor": 0}).validate()
    Config().replace({"search.threshold_mode": "absolute", "search.min_retain": 3}).validate()
    Config().replace({"search.scheduler": "none", "search.grace_period": 9}).validate()
    Config().replace({"train.epochs": 1, "search.grace_period": 2}).validate()
