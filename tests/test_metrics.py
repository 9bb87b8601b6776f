"""Specification of the CLEAR/TOFU metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from clear_ray.eval.metrics import (
    clear_forget_quality_js,
    clear_truth_ratios,
    combined_log_p,
    forget_distance,
    forget_quality,
    forget_quality_js,
    harmonic_mean,
    js_distance,
    ks_statistic,
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


def test_ks_statistic_is_the_largest_gap_between_the_two_ecdfs():
    # On [1, 2): the model's ECDF is 1/3, Gold's 0; elsewhere the gap is 1/3 or 0.
    assert ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) == pytest.approx(
        1 / 3
    )
    # Fully separated: D = 1 whatever n is, while the p-value falls with n (0.1 at n = 3).
    assert ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])) == 1.0


def test_forget_distance_is_w1_between_the_log_truth_ratios():
    # Sorted pairing: (0, 0) and (1, 3) -> (0 + 2) / 2 = 1 nat.
    assert forget_distance(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(1.0)
    # A shift of every log TR by 0.5 nat is a distance of 0.5; Gold against itself is 0.
    gold = np.array([-2.0, 0.3, 1.0])
    assert forget_distance(gold + 0.5, gold) == pytest.approx(0.5)
    assert forget_distance(gold, gold) == 0.0


def test_fisher_combination_of_two_p_values_by_hand():
    # p = e^-1 and e^-2: X = -2(-1 - 2) = 6, P(chi2_4 >= 6) = e^-3 (1 + 3) = 0.19915.
    assert combined_log_p([-1.0, -2.0]) == pytest.approx(-3.0 + math.log(4.0))
    assert math.exp(combined_log_p([-1.0, -2.0])) == pytest.approx(0.1991483, rel=1e-6)
    # One test keeps its own p; two tests at p = 1 give 1.
    assert combined_log_p([-2.5]) == pytest.approx(-2.5)
    assert combined_log_p([0.0, 0.0]) == 0.0


def test_fisher_combination_stays_finite_where_scipys_logsf_underflows():
    # Two p-values at the clipped floor (log ~ -708.4): e^-t (1 + t), t = 1416.8.
    floor = log_forget_quality(0.0)
    t = -2 * floor
    assert combined_log_p([floor, floor]) == pytest.approx(-t + math.log1p(t))


def test_js_distance_equals_scipys_and_is_zero_where_scipy_returns_nan():
    p, q = np.array([0.2, 0.5, 1.3]), np.array([0.9, 0.1, 0.4])
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q))
    proportional = np.array([0.1, 0.3])
    with np.errstate(invalid="ignore"):
        assert math.isnan(jensenshannon(proportional, 100 * proportional))
    assert js_distance(proportional, 100 * proportional) == 0.0


def test_one_minus_js_is_level_blind_and_never_nan():
    # Every TR 100 times Gold's (far less forgotten in TR terms) still scores 1 - JS = 1: the
    # metric compares the items' profile only.
    gold = np.array([0.1, 0.3])
    assert forget_quality_js(100 * gold, gold) == 1.0
    nll_paraphrased = np.array([1.0, 2.0])
    nll_perturbed = np.array([[1.0, 3.0], [0.5, 1.5]])
    shifted = nll_paraphrased - math.log(100.0)  # CLEAR's TRs all 100 times Gold's
    model_tr = clear_truth_ratios(shifted, nll_perturbed)
    gold_tr = clear_truth_ratios(nll_paraphrased, nll_perturbed)
    with np.errstate(invalid="ignore"):
        assert math.isnan(jensenshannon(model_tr, gold_tr))  # CLEAR's own call gives nan here
    score = clear_forget_quality_js(shifted, nll_perturbed, nll_paraphrased, nll_perturbed)
    assert score == 1.0


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
        (lambda: ks_statistic(np.ones(3), np.ones(2)), "expected 3 items"),
        (lambda: forget_distance(np.ones(3), np.ones(2)), "expected 3 items"),
        (lambda: combined_log_p([-1.0, 0.5]), "cannot exceed 0"),
        (lambda: combined_log_p([]), "empty"),
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
