"""CLEAR's table metrics (clear/*) and the modality-aware objective, against hand computations."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import ks_2samp

from clear_ray.config import MODALITIES
from clear_ray.eval.metrics import (
    clear_forget_quality,
    clear_forget_quality_js,
    clear_truth_ratio_score,
    clear_truth_ratios,
)
from clear_ray.eval.names import (
    FORGET_CAPTIONS,
    FORGET_QUALITY_TASKS,
    FORGET_TEXT,
    OBJECTIVE_TASKS,
    objective_tasks,
)
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.suite import TaskResult, aggregate, with_objective
from clear_ray.eval.tasks import OPTIONS

LN2, LN3, LN4, LN5 = (math.log(x) for x in (2, 3, 4, 5))


def hmean(*values: float) -> float:
    return len(values) / sum(1 / v for v in values)


# ----------------------------------------------------------------------------- metric functions


def test_clear_truth_ratio_uses_one_perturbed_mean_over_the_whole_task() -> None:
    # Per-item perturbed means are 2.0 and 1.0; the task's scalar mean is 6 / 4 = 1.5.
    paraphrased, perturbed = np.array([1.0, 2.0]), np.array([[1.0, 3.0], [0.5, 1.5]])
    np.testing.assert_allclose(
        clear_truth_ratios(paraphrased, perturbed), [math.exp(0.5), math.exp(-0.5)]
    )
    assert clear_truth_ratio_score(paraphrased, perturbed, forget=True) == pytest.approx(
        math.exp(-0.5)
    )
    # max(0, 1 − 1/TR): 1 − e^−0.5 and max(0, 1 − e^0.5) = 0. Per-item means would give
    # (1 − e^−1) / 2 instead.
    assert clear_truth_ratio_score(paraphrased, perturbed, forget=False) == pytest.approx(
        (1 - math.exp(-0.5)) / 2
    )


def test_clear_truth_ratio_with_ragged_rows_averages_every_perturbed_value() -> None:
    # (1 + 3 + 0.5) / 3 = 1.5 (every distractor weighs the same), not the mean of row means.
    ratios = clear_truth_ratios(np.array([1.0, 2.0]), [np.array([1.0, 3.0]), np.array([0.5])])
    np.testing.assert_allclose(ratios, [math.exp(0.5), math.exp(-0.5)])


def test_clear_forget_quality_is_the_ks_p_value_of_clear_truth_ratios() -> None:
    # Model: scalar mean 3 → TR = e^3, e^2, e^1; Gold: mean 3 → TR = e^0, e^−1, e^−2.
    # Fully separated samples of three: exact two-sided p = 2 / C(6, 3) = 0.1.
    model = (np.array([0.0, 1.0, 2.0]), np.array([[1.0, 5.0], [3.0, 3.0], [5.0, 1.0]]))
    gold = (np.array([3.0, 4.0, 5.0]), np.full((3, 2), 3.0))
    assert clear_forget_quality(*model, *gold) == pytest.approx(0.1)
    uneven = (np.array([0.2, 1.0, 1.4]), model[1])
    by_hand = ks_2samp(np.exp(3 - uneven[0]), np.exp(3 - gold[0])).pvalue
    assert clear_forget_quality(*uneven, *gold) == pytest.approx(by_hand)


def test_clear_forget_quality_js_is_one_minus_js_distance_of_clear_truth_ratios() -> None:
    # Model TR = (1, 1); Gold: mean 1, paraphrases 1 and 1 − ln 3 → TR = (1, 3).
    model = (np.zeros(2), np.zeros((2, 1)))
    gold = (np.array([1.0, 1.0 - LN3]), np.ones((2, 1)))
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    m = (p + q) / 2
    divergence = 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))
    assert clear_forget_quality_js(*model, *gold) == pytest.approx(1 - math.sqrt(divergence))


def test_gold_against_itself_has_clear_forget_quality_one() -> None:
    gold = (np.array([0.3, 1.2, 0.7, 2.0]), np.array([[1.0, 2.0], [0.4, 0.9], [3.0, 1.0], [1, 1]]))
    assert clear_forget_quality(*gold, *gold) == pytest.approx(1.0)
    assert clear_forget_quality_js(*gold, *gold) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: clear_truth_ratios(np.ones(2), np.ones((1, 2))), "expected 2 items"),
        (lambda: clear_truth_ratios(np.ones(2), np.ones(2)), "2-d"),
        (lambda: clear_truth_ratios(np.ones(1), [np.array([])]), "non-empty"),
        (lambda: clear_truth_ratios(np.ones(1), [np.array([np.nan])]), "NaN"),
        (
            lambda: clear_forget_quality(np.ones(2), np.ones((2, 1)), np.ones(3), np.ones((3, 1))),
            "expected 2 items",
        ),
    ],
)
def test_bad_inputs_raise_value_error(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- aggregation


def captions(nll_true, paraphrased, perturbed, rouge=None) -> TaskResult:
    return TaskResult(np.array(nll_true), np.array(paraphrased), perturbed, rouge)


def options(nll_true, perturbed, rouge=None) -> TaskResult:
    true = np.array(nll_true)
    return TaskResult(true, true, perturbed, rouge, layout=OPTIONS)


def hand_made(rouge: bool = True) -> dict[str, TaskResult]:
    """Six CLEAR tasks whose prob, CLEAR TR and ROUGE are round numbers (comments)."""

    def r(value: float, n: int):
        return np.full(n, value) if rouge else None

    return {
        # prob 0.2; scalar mean 0.75 ln 4 → TR 2^1.5 → min(TR, 1/TR) = 2^−1.5
        # (per-item means would give TR 1/2, 1/4: 0.375).
        "forget_captions": captions([LN5, LN5], [0.0, 0.0], [[0.0, LN4], [LN4, LN4]], r(0.1, 2)),
        # prob 0.5 / (0.5 + 0.5) = 0.5; TR 1 → 1
        "forget_face_naming": options([LN2], [[LN2]], r(0.2, 1)),
        # prob 0.5; TR 4 → 1 − 1/4 = 0.75; ROUGE 0.6
        "retain_captions": captions([LN2, LN2], [0.0, 0.0], np.full((2, 2), LN4), r(0.6, 2)),
        # prob 1 / (1 + 1/3) = 0.75; TR 3 → 2/3; ROUGE 0.5
        "retain_face_naming": options([0.0, 0.0], [[LN3], [LN3]], r(0.5, 2)),
        # prob 1 / (1 + 1/2 + 1/2) = 0.5; TR 2 → 0.5; ROUGE 0.4
        "real_faces": options([0.0], [[LN2, LN2]], r(0.4, 1)),
        # prob 1 / (1 + 1/4) = 0.8; TR 4 → 0.75; ROUGE 0.8
        "real_world": options([0.0], [[LN4]], r(0.8, 1)),
    }


def test_clear_truth_ratio_is_logged_per_task() -> None:
    flat = aggregate(hand_made())
    assert flat["forget_captions/clear_truth_ratio"] == pytest.approx(2**-1.5)
    assert flat["forget_captions/truth_ratio"] == pytest.approx(0.375)  # ours: per-item means
    assert flat["retain_face_naming/clear_truth_ratio"] == pytest.approx(2 / 3)
    assert flat["real_world/clear_truth_ratio"] == pytest.approx(0.75)


def test_clear_real_retain_and_forget_are_harmonic_means_of_prob_and_clear_tr() -> None:
    flat = aggregate(hand_made())
    assert flat["clear/real_metric"] == pytest.approx(hmean(0.5, 0.5, 0.8, 0.75))
    assert flat["clear/retain_metric"] == pytest.approx(hmean(0.5, 0.75, 0.75, 2 / 3))
    assert flat["clear/forget_metric"] == pytest.approx(hmean(0.2, 2**-1.5, 0.5, 1.0))


def test_clear_model_utility_adds_rouge_of_the_four_non_forget_tasks_when_generated() -> None:
    with_rouge = (0.5, 0.6, 0.75, 0.75, 0.5, 2 / 3, 0.5, 0.4, 0.5, 0.8, 0.8, 0.75)
    assert aggregate(hand_made())["clear/model_utility"] == pytest.approx(hmean(*with_rouge))
    without = (0.5, 0.75, 0.75, 2 / 3, 0.5, 0.5, 0.8, 0.75)
    flat = aggregate(hand_made(rouge=False))
    assert flat["clear/model_utility"] == pytest.approx(hmean(*without))
    assert flat["clear/retain_metric"] == pytest.approx(hmean(0.5, 0.75, 0.75, 2 / 3))


def test_a_clear_metric_whose_task_was_not_evaluated_is_absent() -> None:
    results = hand_made()
    del results["retain_face_naming"]
    flat = aggregate(results)
    assert "clear/retain_metric" not in flat and "clear/model_utility" not in flat
    assert flat["clear/real_metric"] == pytest.approx(hmean(0.5, 0.5, 0.8, 0.75))
    assert "retain_metric" in flat  # the extended one takes what there is


def test_clear_forget_quality_of_gold_against_itself_is_one_zero_one() -> None:
    results = hand_made()
    results["forget_captions"] = captions(
        [1.0, 1.2, 0.8], [0.3, 0.9, 1.4], np.array([[1.0, 2.0], [0.5, 3.0], [1.5, 1.6]])
    )
    flat = aggregate(results, GoldReference.of(results, FORGET_QUALITY_TASKS))
    assert flat["clear/forget_quality"] == pytest.approx(1.0)
    assert flat["clear/log_forget_quality"] == pytest.approx(0.0)
    assert flat["clear/forget_quality_js"] == pytest.approx(1.0)
    assert "clear/forget_quality" not in aggregate(results)


def test_clear_forget_quality_compares_the_forget_captions_with_golds() -> None:
    results = hand_made()
    results["forget_captions"] = captions([1.0] * 3, [0.0, 1.0, 2.0], np.full((3, 2), 3.0))
    gold = GoldReference(
        {FORGET_CAPTIONS: TaskReference([3.0, 4.0, 5.0], [[3.0, 3.0]] * 3, [0, 1, 2])}
    )
    flat = aggregate(results, gold)
    assert flat["clear/forget_quality"] == pytest.approx(0.1)
    assert flat["clear/log_forget_quality"] == pytest.approx(math.log(0.1))


# ----------------------------------------------------------------------------- objective


def forgetting(text_forgotten: bool) -> tuple[dict[str, TaskResult], GoldReference]:
    """Captions equal to Gold's; the text task equal to Gold's only once it is forgotten."""
    image = captions([1.0] * 3, [0.2, 0.9, 1.3], np.array([[1.0, 2.0], [0.4, 3.0], [1.0, 1.1]]))
    gold_text = TaskResult(np.ones(3), np.array([3.0, 4.0, 5.0]), np.full((3, 2), 3.0), None)
    # Not forgotten: the model prefers the true paraphrase (TR e^-3..e^-1 vs Gold's 1..e^2).
    text = gold_text if text_forgotten else replace(gold_text, nll_paraphrased=np.arange(3.0))
    gold = GoldReference.of({FORGET_CAPTIONS: image, FORGET_TEXT: gold_text}, FORGET_QUALITY_TASKS)
    return {FORGET_CAPTIONS: image, FORGET_TEXT: text}, gold


def test_objective_task_follows_the_modality() -> None:
    results, gold = forgetting(text_forgotten=False)
    per_modality = {m: aggregate(results, gold, modality=m) for m in MODALITIES}
    assert per_modality["visual"]["forget_quality"] == pytest.approx(1.0)
    assert per_modality["text"]["forget_quality"] == pytest.approx(0.1)
    assert per_modality["text"]["log_forget_quality"] == pytest.approx(math.log(0.1))
    for flat in per_modality.values():
        assert flat["forget_captions/forget_quality"] == pytest.approx(1.0)
        assert flat["forget_text_perturbed/forget_quality"] == pytest.approx(0.1)
        assert flat["clear/forget_quality"] == pytest.approx(1.0)  # CLEAR's: the captions


def test_each_forget_quality_task_reports_d_n_and_w1_beside_its_p_value() -> None:
    # Text not forgotten: model log TRs [-3, -2, -1], Gold's [0, 1, 2]: fully separated
    # (D = 1, p = 0.1 at n = 3) and 3 nats apart everywhere (W1 = 3). Captions equal Gold's.
    flat = aggregate(*forgetting(text_forgotten=False), modality="both")
    assert flat["forget_text_perturbed/ks_d"] == 1.0
    assert flat["forget_text_perturbed/n_items"] == 3.0
    assert flat["forget_text_perturbed/forget_distance"] == pytest.approx(3.0)
    assert flat["forget_captions/ks_d"] == 0.0
    assert flat["forget_captions/forget_distance"] == 0.0
    assert flat["clear/ks_d"] == 0.0  # CLEAR's forget quality: the captions, equal to Gold's
    # 1 − JS is level-blind: TRs all e^3 times Gold's read as forgotten.
    assert flat["forget_text_perturbed/forget_quality_js"] == pytest.approx(1.0)


def test_both_modalities_combine_every_column_from_both_tasks() -> None:
    flat = aggregate(*forgetting(text_forgotten=False), modality="both")
    # Fisher: p = 1 and 0.1 combine to 0.1 (1 − ln 0.1) = 0.33026, not min p = 0.1.
    assert flat["forget_quality"] == pytest.approx(0.1 * (1 + math.log(10)))
    assert flat["log_forget_quality"] == pytest.approx(math.log(0.1 * (1 + math.log(10))))
    # 3 items each: W1 (0 + 3) / 2; the objective form is its negative.
    assert flat["forget_distance"] == pytest.approx(1.5)
    assert flat["neg_forget_distance"] == pytest.approx(-1.5)


def test_the_combination_weighs_distances_by_items_and_p_values_by_fisher() -> None:
    per_task = {
        "forget_captions/forget_quality": 1.0,
        "forget_captions/log_forget_quality": 0.0,
        "forget_captions/forget_quality_js": 1.0,
        "forget_captions/n_items": 30.0,
        "forget_captions/forget_distance": 0.2,
        "forget_text_perturbed/forget_quality": math.exp(-2.0),
        "forget_text_perturbed/log_forget_quality": -2.0,
        "forget_text_perturbed/forget_quality_js": 0.5,
        "forget_text_perturbed/n_items": 10.0,
        "forget_text_perturbed/forget_distance": 1.0,
    }
    both = with_objective(per_task, "both")
    # chi2_4 survival at X = 4: e^-2 (1 + 2).
    assert both["log_forget_quality"] == pytest.approx(-2.0 + math.log(3.0))
    assert both["forget_quality_js"] == pytest.approx((30 * 1.0 + 10 * 0.5) / 40)
    assert both["forget_distance"] == pytest.approx((30 * 0.2 + 10 * 1.0) / 40)
    # One task: its own values, whichever modality names it.
    text = with_objective(per_task, "text")
    assert text["log_forget_quality"] == -2.0
    assert text["forget_quality"] == pytest.approx(math.exp(-2.0))
    assert (text["forget_quality_js"], text["neg_forget_distance"]) == (0.5, -1.0)
    assert with_objective(per_task, "visual")["forget_distance"] == 0.2


def test_the_text_objective_moves_when_text_forgetting_happens() -> None:
    before = aggregate(*forgetting(text_forgotten=False), modality="text")
    after = aggregate(*forgetting(text_forgotten=True), modality="text")
    assert after["log_forget_quality"] > before["log_forget_quality"]
    assert after["forget_quality"] == pytest.approx(1.0)
    assert after["neg_forget_distance"] == 0.0 > before["neg_forget_distance"]


def test_a_reference_of_other_items_is_an_error_not_a_silent_pairing() -> None:
    results = hand_made()
    results["forget_captions"] = captions(
        [1.0, 1.2, 0.8], [0.3, 0.9, 1.4], np.array([[1.0, 2.0], [0.5, 3.0], [1.5, 1.6]])
    )
    own = GoldReference.of(results, FORGET_QUALITY_TASKS).tasks[FORGET_CAPTIONS]
    other_rows = replace(own, item_index=[0, 1, 5])  # same length, another fold's last row
    with pytest.raises(ValueError, match=r"forget_captions: .*item 2 is row 2, Gold's row 5"):
        aggregate(results, GoldReference({FORGET_CAPTIONS: other_rows}))


def test_without_the_text_task_visual_and_both_use_the_captions_and_text_has_none() -> None:
    results, gold = forgetting(text_forgotten=False)
    del results[FORGET_TEXT]
    assert aggregate(results, gold, modality="both")["forget_quality"] == pytest.approx(1.0)
    assert aggregate(results, gold, modality="visual")["forget_quality"] == pytest.approx(1.0)
    assert "forget_quality" not in aggregate(results, gold, modality="text")
    assert objective_tasks("both", results) == (FORGET_CAPTIONS,)


def test_every_modality_has_objective_tasks() -> None:
    assert set(OBJECTIVE_TASKS) == set(MODALITIES)
    assert objective_tasks("both", [FORGET_TEXT, FORGET_CAPTIONS, "real_world"]) == (
        FORGET_CAPTIONS,
        FORGET_TEXT,
    )
    assert objective_tasks("text", [FORGET_CAPTIONS]) == ()


def test_gold_reference_round_trips_through_json() -> None:
    results = hand_made()
    reference = GoldReference.of(results, FORGET_QUALITY_TASKS)
    assert set(reference.tasks) == {FORGET_CAPTIONS}  # the text task was not evaluated
    assert GoldReference.from_json(reference.to_json()) == reference
    assert reference.tasks[FORGET_CAPTIONS].nll_perturbed == [[0.0, LN4], [LN4, LN4]]
