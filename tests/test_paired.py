"""clear_ray/paired.py: the study's paired statistics and the pre-registered rules, on
numbers whose answers are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from clear_ray.paired import (
    FAIL,
    HARM,
    PASS,
    Comparison,
    Rules,
    Verdict,
    blinded_variances,
    cluster_bootstrap_ci,
    compare_seeds,
    draw_differences,
    draws_needed,
    endpoint_value,
    holm,
    method_verdict,
    platform_verdict,
    power,
    probability_of_improvement,
    sign_flip_p,
    wilcoxon_p,
)


def test_an_infeasible_run_counts_as_originals_value() -> None:
    assert endpoint_value(-3.0, True, -15.0) == -3.0
    assert endpoint_value(-3.0, False, -15.0) == -15.0


def test_draw_differences_average_each_draws_seed_pairs() -> None:
    draws = [[(1.0, 0.0), (3.0, 0.0)], [(-2.0, -1.0)]]
    assert draw_differences(draws).tolist() == [2.0, -1.0]
    with pytest.raises(ValueError):
        draw_differences([[(1.0, 0.0)], []])


def test_sign_flip_p_counts_the_patterns_at_least_as_large() -> None:
    # ±1 ±2 ±3: sums 6, 4, 2, 0, 0, −2, −4, −6; only the observed 6 reaches 6.
    assert sign_flip_p([1, 2, 3]) == 1 / 8
    # 3 − 1 = 2: of 4, 2, −2, −4 two reach 2.
    assert sign_flip_p([3, -1]) == 0.5
    # Equal sums are ties and count: 1 + 1 − 1 = 1 is reached by 4 of the 8 patterns.
    assert sign_flip_p([1, 1, -1]) == 0.5
    # The smallest p is 2^−D: four draws can never reach 0.05.
    assert sign_flip_p([5, 6, 7, 8]) == 1 / 16


def test_sign_flip_p_takes_at_most_16_draws() -> None:
    assert sign_flip_p([1.0] * 16) == 2.0**-16
    with pytest.raises(ValueError):
        sign_flip_p([1.0] * 17)


def test_wilcoxon_without_ties_is_the_exact_signed_rank_p() -> None:
    # Ranks 2, 1(−), 3, 4: W+ = 9; of the 16 sign patterns {2,3,4} = 9 and {1,2,3,4} = 10
    # reach 9.
    assert wilcoxon_p([2, -1, 3, 4]) == 2 / 16


def test_wilcoxon_zsplit_on_lattice_ties_and_a_zero() -> None:
    # |d| ranks: 0 -> 1; 0.6 x3 -> 3 (mid-rank of 2..4); 1.2 -> 5. zsplit gives the zero half
    # its rank on each side: W+ = 3 + 3 + 5 + 0.5 = 11.5. Flipping {3,3,3,5}: sums ≥ 11 are
    # {3,3,5} (3 ways) and {3,3,3,5}: 4 of 16 (the zero's flip doubles both counts).
    lattice = [0.6, 0.6, 0.0, -0.6, 1.2]
    assert wilcoxon_p(lattice) == pytest.approx(0.25)
    # The sign-flip test on the mean agrees: sums ≥ 1.8 are 3.0 and 1.8 (one 0.6 negative).
    assert sign_flip_p(lattice) == pytest.approx(0.25)


def test_wilcoxon_matches_scipys_permutation_distribution_with_ties() -> None:
    # scipy's own zsplit statistic, permuted exactly for tied samples of up to 13.
    for sample in ([1.2, 1.2, 0, -0.6, 2.4, 0.6, 1.2, 0], [1, 1, 0, 0, 2], [0.5, -0.5, 1, 0]):
        expected = stats.wilcoxon(sample, zero_method="zsplit", alternative="greater").pvalue
        assert wilcoxon_p(sample) == pytest.approx(expected)


def test_wilcoxon_is_exact_past_scipys_13_difference_switch() -> None:
    # Tied and 16 long: every difference positive is the one most extreme of 2^15 patterns
    # that matter (the zero's sign changes nothing): p = 2 / 2^16.
    tied = [0.6] * 8 + [1.2] * 7 + [0.0]
    assert wilcoxon_p(tied) == pytest.approx(2 / 2**16)


def test_holm_steps_down_and_stays_monotone() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1: 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.5.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})
    assert holm({"a": 0.4, "b": 0.6}) == {"a": 0.8, "b": 0.8}  # capped at 1 where needed


def test_cluster_bootstrap_carries_the_seed_to_seed_variance() -> None:
    # Every draw's mean is 0, but its seeds disagree: a bootstrap of the draws alone would
    # give [0, 0]; resampling the seeds within each draw widens it.
    draws = [[(1.0, 0.0), (-1.0, 0.0)]] * 8
    low, high = cluster_bootstrap_ci(draws, resamples=4000, seed=1)
    assert low < -0.2 and high > 0.2
    # Resample means are means of the values: the interval never leaves [min, max].
    constant = [[(2.0, 1.0), (2.0, 1.0)]] * 5
    assert cluster_bootstrap_ci(constant, resamples=500) == (1.0, 1.0)


def test_cluster_bootstrap_matches_the_normal_interval_on_many_single_seed_draws() -> None:
    # One seed per draw: the bootstrap of the mean of D values has sd ≈ sd_pop / sqrt(D).
    values = np.random.default_rng(0).normal(1.0, 2.0, size=16)
    draws = [[(float(v), 0.0)] for v in values]
    low, high = cluster_bootstrap_ci(draws, resamples=20_000, seed=0)
    half = 1.96 * values.std() / math.sqrt(16)
    assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half), abs=0.15)
    assert cluster_bootstrap_ci(draws, resamples=2000, seed=3) == cluster_bootstrap_ci(
        draws, resamples=2000, seed=3
    )


def test_probability_of_improvement_counts_ties_half() -> None:
    draws = [[(1.0, 0.0), (0.0, 0.0)], [(0.0, 1.0), (2.0, 1.0)]]
    assert probability_of_improvement(draws) == (1 + 0.5 + 0 + 1) / 4


def test_blinded_variances_split_draw_and_seed_variance_without_the_effect() -> None:
    # Differences per draw [1, 3], [5, 7], [9, 11]: within-draw variance 2 each (1 dof), so
    # σ²_run = 2; draw means 2, 6, 10 have variance 16, so σ²_draw = 16 − 2/2 = 15.
    draws = [[(1.0, 0.0), (3.0, 0.0)], [(5.0, 0.0), (7.0, 0.0)], [(9.0, 0.0), (11.0, 0.0)]]
    assert blinded_variances({"npo": draws}) == pytest.approx((15.0, 2.0))
    shifted = [[(t + 40.0, d) for t, d in pairs] for pairs in draws]
    swapped = [[(d, t) for t, d in pairs] for pairs in draws]
    assert blinded_variances({"npo": shifted}) == pytest.approx((15.0, 2.0))
    assert blinded_variances({"npo": swapped}) == pytest.approx((15.0, 2.0))
    # Pooled: the mean over methods.
    quiet = [[(0.0, 0.0), (0.0, 0.0)], [(0.0, 0.0), (0.0, 0.0)]]
    assert blinded_variances({"npo": draws, "dpo": quiet}) == pytest.approx((7.5, 1.0))


def test_power_is_alpha_without_an_effect_and_grows_with_draws() -> None:
    assert power(10, 4.0, 4.0, 2, 0.0, 0.05) == pytest.approx(0.05)
    powers = [power(d, 4.0, 4.0, 2, 2.0, 0.025) for d in range(8, 17)]
    assert powers == sorted(powers)
    chosen = draws_needed(4.0, 4.0, 2, 2.0, 0.025, 0.8, 8)
    assert power(chosen, 4.0, 4.0, 2, 2.0, 0.025) >= 0.8 > power(chosen - 1, 4, 4, 2, 2.0, 0.025)
    assert draws_needed(100.0, 100.0, 2, 2.0, 0.025, 0.8, 8) == 16  # never enough: the cap


def comparison(
    mean: float = 1.0,
    ci: tuple[float, float] = (0.2, 2.0),
    tuned: float = 1.0,
    default: float = 1.0,
    method: str = "npo",
) -> Comparison:
    return Comparison(method, (mean,), 2, 0.01, 0.01, ci, 0.9, tuned, default)


def test_method_verdict_passes_only_when_every_rule_holds() -> None:
    assert method_verdict(comparison(), 0.049) == Verdict(PASS)
    assert method_verdict(comparison(mean=0.5), 0.01).outcome == PASS  # gain ≥ 0.5 holds
    assert method_verdict(comparison(tuned=0.9), 0.01).outcome == PASS  # a drop of 0.10 is allowed
    failing = {
        "Holm p 0.05 ≥ 0.05": method_verdict(comparison(), 0.05),
        "CI lower bound 0 ≤ 0": method_verdict(comparison(ci=(0.0, 2.0)), 0.01),
        "mean gain 0.49 < 0.5": method_verdict(comparison(mean=0.49), 0.01),
        "tuned feasible 88% vs default 100%": method_verdict(comparison(tuned=0.875), 0.01),
    }
    for reason, verdict in failing.items():
        assert verdict == Verdict(FAIL, (reason,))


def test_harm_is_a_ci_below_zero() -> None:
    harm = method_verdict(comparison(mean=-1.0, ci=(-2.0, -0.1)), 1.0)
    assert harm.outcome == HARM
    assert str(harm) == "HARM (95% CI [-2, -0.1] below 0)"
    assert method_verdict(comparison(mean=-1.0, ci=(-2.0, 0.0)), 1.0).outcome == FAIL


def test_platform_needs_two_passes_one_not_gd_and_no_harm() -> None:
    fail = Verdict(FAIL, ("x",))
    only_gd = {"gd": Verdict(PASS), "npo": fail, "dpo": fail, "idk": fail}
    assert platform_verdict(only_gd) == Verdict(
        FAIL, ("1 of 4 methods passed, 2 needed", "only gd passed, whose default collapses")
    )
    two = {**only_gd, "npo": Verdict(PASS)}
    assert platform_verdict(two) == Verdict(PASS)
    harmed = {**two, "idk": Verdict(HARM, ("y",))}
    assert platform_verdict(harmed) == Verdict(FAIL, ("harm: idk",))
    # Where two methods' defaults collapse, their two passes are not enough.
    rules = Rules(uninformative=frozenset({"gd", "npo"}))
    assert platform_verdict(two, rules).outcome == FAIL


def test_seed_verdict_says_inconclusive_at_n_seeds() -> None:
    # [1, 2, 3]: mean 2, sd 1, t(0.975, 2) = 4.303: 2 ± 2.484.
    wide = compare_seeds({1: 1.0, 2: 2.0, 3: 3.0}, {1: 0.0, 2: 0.0, 3: 0.0})
    assert wide.interval == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)
    assert wide.verdict() == "inconclusive at 3 seeds (95% t-interval [-0.4841, +4.484] contains 0)"
    # [2, 2.5, 3]: sd 0.5: 2.5 ± 1.242.
    clear = compare_seeds({1: -1.0, 2: -0.5, 3: 0.0}, {1: -3.0, 2: -3.0, 3: -3.0})
    assert clear.verdict() == (
        "tuned beat default at 3 seeds (95% t-interval [+1.258, +3.742] above 0)"
    )
    worse = compare_seeds({1: -3.0, 2: -3.0, 3: -3.0}, {1: -1.0, 2: -0.5, 3: 0.0})
    assert worse.verdict().startswith("default beat tuned at 3 seeds (95% t-interval [-3.742,")
    assert clear.p_sign_flip == 1 / 8  # three seeds: never below 1/8


def test_seed_verdict_without_spread_or_pairs_says_why() -> None:
    one = compare_seeds({1: 0.0}, {1: -1.0})
    assert one.verdict() == "inconclusive at 1 seed (one pair gives no interval)"
    lattice = compare_seeds({1: 0.0, 2: 0.0}, {1: -1.2, 2: -1.2})
    assert lattice.verdict() == (
        "inconclusive at 2 seeds (every pair differs by the same +1.2, which leaves the "
        "seed-to-seed noise unmeasured)"
    )
    tied = compare_seeds({1: -2.0, 2: -2.0}, {1: -2.0, 2: -2.0})
    assert tied.verdict() == "inconclusive at 2 seeds (tuned and default tied on every seed)"
    # Pairs only where both ran the seed.
    shared = compare_seeds({1: 1.0, 2: 2.0}, {2: 0.0, 3: 0.0})
    assert (shared.seeds, shared.differences) == ((2,), (2.0,))
    assert compare_seeds({1: 1.0}, {2: 0.0}).verdict() == (
        "not compared: no seed has both a tuned and a default run"
    )
