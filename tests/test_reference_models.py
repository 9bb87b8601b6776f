"""Original knows the forget persons, Gold does not, and both are cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray.config import Config
from clear_ray.eval.gold import reference_evaluation
from clear_ray.references.prepare import ReferenceModels, reference_models
from clear_ray.references.recipes import model_name

pytestmark = pytest.mark.slow

# Measured on the default data (each fold of the demo): retain face naming 0.61-0.62 for
# Original and 0.68 for Gold, forget face naming 0.60-0.68 for Original and < 0.001 for Gold.
# The tests run on the session's 40 persons (e2e_scale.py), where the same margins hold.
RETAIN_NAMING_MARGIN = 0.2  # above chance (1 of 4 options: 0.25)
FORGET_NAMING_GAP = 0.3


@pytest.fixture(scope="module")
def models(session_config: Config, synthetic_source: str, session_output: Path) -> ReferenceModels:
    return reference_models(session_config, synthetic_source, session_output / "cache")


def test_original_knows_forget_persons_and_gold_does_not(
    models: ReferenceModels, session_config: Config, synthetic_source: str
) -> None:
    split, eval_config = session_config.data.forget_split, session_config.eval
    gold = reference_evaluation(models.gold, synthetic_source, split, eval_config)
    original = reference_evaluation(
        models.original, synthetic_source, split, eval_config, gold.reference
    )
    assert original.metrics["forget_captions/prob"] > 0.5
    assert gold.metrics["forget_captions/prob"] < 0.2
    assert original.metrics["clear/forget_metric"] > 2 * gold.metrics["clear/forget_metric"]
    assert original.metrics["log_forget_quality"] < -5  # KS test separates them clearly
    # both know the retain persons
    assert original.metrics["retain_captions/prob"] > 0.5
    assert gold.metrics["retain_captions/prob"] > 0.5


def test_face_naming_reads_who_is_pictured_not_how_common_a_name_is(
    models: ReferenceModels, session_config: Config, synthetic_source: str
) -> None:
    """Both models name the retain persons they were trained on well above chance (1 of 4
    options); Original names the forget persons, Gold cannot; so CLEAR's Retain column is the
    same for both, as in CLEAR (Original ≈ Gold on Retain)."""
    split, eval_config = session_config.data.forget_split, session_config.eval
    gold = reference_evaluation(models.gold, synthetic_source, split, eval_config)
    original = reference_evaluation(
        models.original, synthetic_source, split, eval_config, gold.reference
    )
    chance = 0.25
    for model in (original, gold):
        assert model.metrics["retain_face_naming/prob"] > chance + RETAIN_NAMING_MARGIN
    forget = original.metrics["forget_face_naming/prob"]
    assert forget > gold.metrics["forget_face_naming/prob"] + FORGET_NAMING_GAP
    retain = original.metrics["clear/retain_metric"]
    assert abs(retain - gold.metrics["clear/retain_metric"]) < 0.1 * retain


def test_gold_against_itself_has_perfect_forget_quality(
    models: ReferenceModels, session_config: Config, synthetic_source: str
) -> None:
    gold = reference_evaluation(
        models.gold, synthetic_source, session_config.data.forget_split, session_config.eval
    )
    assert gold.metrics["forget_quality"] == pytest.approx(1.0)
    assert gold.metrics["log_forget_quality"] == pytest.approx(0.0)
    assert gold.metrics["forget_quality_js"] == pytest.approx(1.0)
    assert gold.metrics["clear/forget_quality"] == pytest.approx(1.0)
    assert gold.metrics["clear/log_forget_quality"] == pytest.approx(0.0)
    assert gold.metrics["clear/forget_quality_js"] == pytest.approx(1.0)


def test_second_request_reuses_the_cached_models(
    models: ReferenceModels, session_config: Config, synthetic_source: str, session_output: Path
) -> None:
    before = {path: path.stat().st_mtime_ns for path in models.original.iterdir()}
    again = reference_models(session_config, synthetic_source, session_output / "cache")
    assert again == models
    assert {path: path.stat().st_mtime_ns for path in again.original.iterdir()} == before


def test_a_different_recipe_gets_a_different_cache_key(
    models: ReferenceModels, session_config: Config, synthetic_source: str
) -> None:
    changed = session_config.replace({"finetune.epochs": 1})
    for role, made in (("original", models.original), ("gold", models.gold)):
        assert model_name(session_config, synthetic_source, role) == made.name
        assert model_name(changed, synthetic_source, role) != made.name
