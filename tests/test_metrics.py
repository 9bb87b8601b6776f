"""Specification of the CLEAR/TOFU metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clear_ray.eval.metrics import (
    forget_quality,
    forget_quality_js,
    harmonic_mean,
    log_forget_quality,
    probability,
    probability_with_options,
    rouge_l_recall,
    truth_ratio_score,
    truth_ratios,
)


def test_probability_is_mean_of_exp_minus_nll():
    nll = np.array([0.0, math.log(2), math.log(4)])
    assert probability(nll) == pytest.approx((1 + 0.5 + 0.25) / 3)


def test_probability_with_options_normalises_over_true_and_distractors():
    nll_true = np.array([math.log(2), 0.0])
    nll_options = np.array([[math.log(2), math.log(4)], [math.log(2), math.log(2)]])
    expected = [0.5 / (0.5 + 0.5 + 0.25), 1.0 / (1.0 + 0.5 + 0.5)]
    assert probability_with_options(nll_true, nll_options) == pytest.approx(np.mean(expected))


def test_probability_with_options_is_stable_for_large_nll():
    # exp(-1000) underflows to 0; the ratio is still exactly 1/3 for three equal NLLs.
    nll_true = np.array([1000.0])
    assert probability_with_options(nll_true, np.array([[1000.0, 1000.0]])) == pytest.approx(1 / 3)


def test_truth_ratio_is_exp_of_paraphrase_minus_mean_perturbed_nll():
    ratios = truth_ratios(np.array([1.0, 2.0]), np.array([[1.0, 3.0], [0.5, 1.5]]))
    np.testing.assert_allclose(ratios, [math.exp(1.0 - 2.0), math.exp(2.0 - 1.0)])


def test_model_preferring_the_paraphrase_has_truth_ratio_below_one():
    ratios = truth_ratios(np.array([0.3]), np.array([[2.0, 2.5, 3.0]]))
    assert ratios[0] < 1


def test_forget_truth_ratio_score_is_mean_of_min_tr_and_inverse():
    assert truth_ratio_score(np.array([0.5, 4.0, 1.0]), forget=True) == pytest.approx(
        (0.5 + 0.25 + 1.0) / 3
    )


def test_non_forget_truth_ratio_score_is_mean_of_one_minus_tr_clipped_at_zero():
    assert truth_ratio_score(np.array([0.25, 2.0, 1.0]), forget=False) == pytest.approx(0.75 / 3)


def test_forget_quality_is_ks_p_value():
    # Fully separated samples of size 3: exact two-sided KS p-value = 2 / C(6, 3) = 0.1.
    assert forget_quality(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])) == pytest.approx(
        0.1
    )


def test_gold_against_itself_has_forget_quality_one():
    gold = np.array([0.2, 0.9, 1.3, 0.5, 2.0])
    assert forget_quality(gold, gold) == pytest.approx(1.0)
    assert forget_quality_js(gold, gold) == pytest.approx(1.0)
    assert log_forget_quality(forget_quality(gold, gold)) == pytest.approx(0.0)


def test_forget_quality_js_matches_hand_computation():
    tr_model, tr_gold = np.array([1.0, 1.0]), np.array([1.0, 1 / 3])
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])  # 1/TR normalised to sum 1
    m = (p + q) / 2
    divergence = 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))
    assert forget_quality_js(tr_model, tr_gold) == pytest.approx(1 - math.sqrt(divergence))


def test_rouge_l_recall_on_a_known_pair():
    # LCS "the cat on the mat" = 5 of the reference's 6 tokens; stemming maps "sitting" to "sit".
    scores = rouge_l_recall(
        ["the cat on the mat", "he is sitting"], ["the cat sat on the mat", "he is sit"]
    )
    np.testing.assert_allclose(scores, [5 / 6, 1.0])


def test_harmonic_mean_matches_hand_computation():
    assert harmonic_mean([0.5, 0.25, 1.0]) == pytest.approx(3 / (2 + 4 + 1))


def test_harmonic_mean_with_a_zero_is_zero():
    assert harmonic_mean([0.9, 0.0, 0.8]) == 0.0


def test_log_forget_quality_is_natural_log():
    assert log_forget_quality(math.exp(-3.0)) == pytest.approx(-3.0)


def test_log_forget_quality_of_zero_is_finite():
    assert math.isfinite(log_forget_quality(0.0))
    assert log_forget_quality(0.0) < log_forget_quality(1e-300)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: probability(np.array([])), "empty"),
        (lambda: probability(np.array([[1.0]])), "1-d"),
        (lambda: probability(np.array([1.0, np.nan])), "NaN"),
        (lambda: probability_with_options(np.ones(2), np.ones((3, 2))), "expected 2 items"),
        (lambda: probability_with_options(np.ones(2), np.ones(2)), "2-d"),
        (lambda: truth_ratios(np.ones(2), np.ones((1, 4))), "expected 2 items"),
        (lambda: truth_ratio_score(np.array([-1.0]), forget=True), "non-negative"),
        (lambda: forget_quality(np.ones(3), np.ones(4)), "expected 3 items"),
        (lambda: forget_quality_js(np.ones(3), np.array([1.0, np.nan, 1.0])), "NaN"),
        (lambda: rouge_l_recall(["a"], ["a", "b"]), "same non-zero number"),
        (lambda: rouge_l_recall([], []), "same non-zero number"),
        (lambda: harmonic_mean([]), "empty"),
        (lambda: harmonic_mean([0.5, -0.1]), "non-negative"),
        (lambda: log_forget_quality(float("nan")), r"\[0, 1\]"),
        (lambda: log_forget_quality(1.5), r"\[0, 1\]"),
    ],
)
def test_bad_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
