"""Paired comparisons of a tuned and a default configuration: the statistics, pure functions.

Tuned and default are trained with the same seeds, so each seed gives a pair and the question
is the paired difference tuned − default of one value (higher is better). Two uses:

- the study (``bench/analyse_study.py``, /work/shared/STUDY_DESIGN.md §2-3): the replication
  unit is the reference draw (data, reference, fold and sampler seeds); per method, the D
  per-draw mean differences are tested with an exact one-sided sign-flip test (Wilcoxon
  signed-rank with ``zero_method="zsplit"`` beside it: the KS lattice makes ties and zeros
  common), Holm-adjusted over the methods, with a two-stage cluster bootstrap CI (draws, then
  seeds within a draw: Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice",
  stratified bootstrap) and the probability of improvement; ``method_verdict`` and
  ``platform_verdict`` are the pre-registered rules (bench/PREREGISTRATION.md);
- a user's search (its confirm seeds, one draw of the references): ``compare_seeds`` gives the
  mean difference over the seed pairs, its t-interval and a verdict that may be "inconclusive".

An infeasible run counts as Original's value (``endpoint_value``): it is no better than not
unlearning, and a collapsed model must not score on forgetting it bought with its retain set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

Pair = tuple[float, float]  # (tuned, default) of one seed
# The pairs of each draw: draws[i] holds draw i's seeds' (tuned, default).
DrawPairs = Sequence[Sequence[Pair]]

MAX_EXACT_DRAWS = 16  # 2^16 sign patterns: the exact tests enumerate them all
PASS, FAIL, HARM = "PASS", "FAIL", "HARM"


def endpoint_value(value: float, feasible: bool, original: float) -> float:
    """The primary endpoint of one run: its value, or Original's when it is infeasible."""
    return value if feasible else original


def draw_differences(draws: DrawPairs) -> np.ndarray:
    """Per draw, the mean over its seeds of tuned − default (the test's D observations)."""
    if not draws or any(not pairs for pairs in draws):
        raise ValueError("every draw needs at least one (tuned, default) pair")
    return np.array([np.mean([t - d for t, d in pairs]) for pairs in draws], dtype=float)


def _check_exact(differences: np.ndarray) -> None:
    if not 1 <= len(differences) <= MAX_EXACT_DRAWS:
        raise ValueError(f"the exact tests take 1 to {MAX_EXACT_DRAWS} differences")


def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact one-sided p of the mean difference under sign flips (H0: each difference is
    symmetric about 0): the share of all 2^D sign patterns whose mean is at least the observed
    one. The smallest attainable p is 2^−D, so D ≤ 4 can never reach 0.05."""
    d = np.asarray(differences, dtype=float)
    _check_exact(d)
    patterns = np.arange(2 ** len(d))[:, None] >> np.arange(len(d)) & 1
    means = (1 - 2 * patterns) @ d / len(d)
    observed = d.mean()
    # Equal means computed in another order differ in the last bits; they count as ties.
    slack = 1e-9 * max(1.0, float(np.abs(d).max()))
    return float(np.mean(means >= observed - slack))


def wilcoxon_p(differences: Sequence[float]) -> float:
    """One-sided Wilcoxon signed-rank p with zeros split between the signs (``zsplit``:
    zeros are ranked, half of each zero's rank on either side), exact over all 2^D sign
    patterns. W+ = (Σ rank + Σ sign·rank) / 2 over the non-zero differences plus a constant, so
    it is the sign-flip test of the signed mid-ranks (zeros 0). This is the null distribution
    scipy's ``wilcoxon(zero_method="zsplit")`` permutes for ties up to 13 differences (above,
    scipy switches to the normal approximation)."""
    d = np.asarray(differences, dtype=float)
    _check_exact(d)
    return sign_flip_p(np.sign(d) * stats.rankdata(np.abs(d)))


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (Holm 1979): the k-th smallest of m is multiplied
    by m − k + 1, made non-decreasing and capped at 1; reject where adjusted p < alpha."""
    adjusted, running = {}, 0.0
    ordered = sorted(pvalues, key=lambda name: pvalues[name])
    for rank, name in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def cluster_bootstrap_ci(
    draws: DrawPairs, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Two-sided percentile CI of the mean difference by a two-stage cluster bootstrap: draws
    are resampled with replacement, then each picked draw's seed pairs within it, so that the
    interval carries both the draw-to-draw and the seed-to-seed variance. Seeded."""
    differences = [np.array([t - d for t, d in pairs], dtype=float) for pairs in draws]
    draw_differences(draws)  # the same check: no empty draw
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = np.empty(picks.shape)
    for index, values in enumerate(differences):
        chosen = picks == index
        seeds = rng.integers(0, len(values), size=(int(chosen.sum()), len(values)))
        means[chosen] = values[seeds].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means.mean(axis=1), [tail, 1.0 - tail])
    return float(low), float(high)


def probability_of_improvement(draws: DrawPairs) -> float:
    """P(tuned > default) over all (draw, seed) pairs, a tie counting ½ (Agarwal et al. 2021)."""
    pairs = [pair for pairs in draws for pair in pairs]
    if not pairs:
        raise ValueError("no (tuned, default) pairs")
    return float(np.mean([1.0 if t > d else 0.5 if t == d else 0.0 for t, d in pairs]))


def blinded_variances(draws_by_method: Mapping[str, DrawPairs]) -> tuple[float, float]:
    """(σ²_draw, σ²_run) of the paired differences, pooled over the methods, from statistics
    that adding any constant to every difference leaves unchanged: so they carry nothing of
    the effect's size or sign and can size the study before it is unblinded.

    σ²_run: the within-draw variance of the seed differences (pooled, draws with ≥ 2 seeds);
    σ²_draw: the variance of the per-draw means less σ²_run / S (floored at 0), the method-of-
    moments split of Var(draw mean) = σ²_draw + σ²_run / S. Each is the mean over methods.
    """
    draw_parts, run_parts = [], []
    for draws in draws_by_method.values():
        within = [np.array([t - d for t, d in pairs]) for pairs in draws if len(pairs) > 1]
        dof = sum(len(values) - 1 for values in within)
        if dof == 0 or len(draws) < 2:
            raise ValueError("the variances need ≥ 2 draws and a draw with ≥ 2 seeds")
        var_run = sum(float(((v - v.mean()) ** 2).sum()) for v in within) / dof
        seeds = float(np.mean([len(pairs) for pairs in draws]))
        var_means = float(np.var(draw_differences(draws), ddof=1))
        draw_parts.append(max(0.0, var_means - var_run / seeds))
        run_parts.append(var_run)
    return float(np.mean(draw_parts)), float(np.mean(run_parts))


def power(
    draws: int, var_draw: float, var_run: float, seeds: int, effect: float, alpha: float
) -> float:
    """Power of a one-sided test of the mean per-draw difference at level ``alpha`` to detect
    ``effect``, by the paired t-test's noncentral t with D − 1 degrees of freedom, where
    Var(mean) = σ²_draw / D + σ²_run / (D·S) (STUDY_DESIGN §2). The exact sign-flip test's
    power is close to it for D ≥ 8."""
    standard_error = math.sqrt(var_draw / draws + var_run / (draws * seeds))
    if standard_error == 0:
        return 1.0
    critical = stats.t.ppf(1.0 - alpha, draws - 1)
    return float(stats.nct.sf(critical, draws - 1, effect / standard_error))


def draws_needed(
    var_draw: float,
    var_run: float,
    seeds: int,
    effect: float,
    alpha: float,
    target: float,
    fewest: int,
    most: int = MAX_EXACT_DRAWS,
) -> int:
    """The smallest D in [fewest, most] whose ``power`` reaches ``target``; ``most`` if none."""
    for count in range(fewest, most + 1):
        if power(count, var_draw, var_run, seeds, effect, alpha) >= target:
            return count
    return most


# ------------------------------------------------------------------ the pre-registered rules


@dataclass(frozen=True)
class Rules:
    """The study's pass/harm rules (STUDY_DESIGN §3, bench/PREREGISTRATION.md)."""

    alpha: float = 0.05  # Holm-adjusted one-sided p below this
    level: float = 0.95  # two-sided CI: above 0 to pass, below 0 is harm
    min_gain: float = 0.5  # mean per-draw difference at least this (nats of log FQ)
    max_feasible_drop: float = 0.10  # tuned's feasible rate not lower than default's by more
    min_passes: int = 2  # methods that must pass for the platform to pass
    # Methods whose default collapses: a pass of theirs alone is no evidence for tuning.
    uninformative: frozenset[str] = frozenset({"gd"})


@dataclass(frozen=True)
class Comparison:
    """One method's tuned − default over the draws, and what the rules need of it."""

    method: str
    differences: tuple[float, ...]  # per draw: the mean over its seeds of tuned − default
    pairs: int  # (draw, seed) pairs
    p_sign_flip: float  # exact, one-sided, unadjusted
    p_wilcoxon: float  # zsplit, one-sided, unadjusted
    ci: tuple[float, float]  # two-stage cluster bootstrap, two-sided
    improvement: float  # P(tuned > default) over the pairs
    feasible_tuned: float  # fraction of the arm's runs that were feasible
    feasible_default: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences))


def compare(
    method: str,
    draws: DrawPairs,
    feasible_tuned: float,
    feasible_default: float,
    rules: Rules = Rules(),
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    differences = draw_differences(draws)
    return Comparison(
        method=method,
        differences=tuple(float(d) for d in differences),
        pairs=sum(len(pairs) for pairs in draws),
        p_sign_flip=sign_flip_p(differences),
        p_wilcoxon=wilcoxon_p(differences),
        ci=cluster_bootstrap_ci(draws, rules.level, resamples, seed),
        improvement=probability_of_improvement(draws),
        feasible_tuned=feasible_tuned,
        feasible_default=feasible_default,
    )


@dataclass(frozen=True)
class Verdict:
    outcome: str  # PASS | FAIL | HARM
    reasons: tuple[str, ...] = ()  # why not PASS (FAIL), why HARM; empty for PASS

    def __str__(self) -> str:
        return self.outcome + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def method_verdict(comparison: Comparison, p_holm: float, rules: Rules = Rules()) -> Verdict:
    """PASS iff Holm-adjusted p < alpha, the CI above 0, mean gain ≥ min_gain and tuned's
    feasible rate not lower than default's by more than max_feasible_drop; HARM iff the CI
    lies below 0; FAIL otherwise, with the rules it missed."""
    low, high = comparison.ci
    if high < 0:
        return Verdict(HARM, (f"{rules.level:.0%} CI [{low:.3g}, {high:.3g}] below 0",))
    missed = []
    if not p_holm < rules.alpha:
        missed.append(f"Holm p {p_holm:.3g} ≥ {rules.alpha:g}")
    if not low > 0:
        missed.append(f"CI lower bound {low:.3g} ≤ 0")
    if not comparison.mean >= rules.min_gain:
        missed.append(f"mean gain {comparison.mean:.3g} < {rules.min_gain:g}")
    drop = comparison.feasible_default - comparison.feasible_tuned
    if drop > rules.max_feasible_drop + 1e-9:  # rates are k/n: 0.9 − 0.8 must not exceed 0.1
        missed.append(
            f"tuned feasible {comparison.feasible_tuned:.0%} vs default "
            f"{comparison.feasible_default:.0%}"
        )
    return Verdict(FAIL, tuple(missed)) if missed else Verdict(PASS)


def platform_verdict(verdicts: Mapping[str, Verdict], rules: Rules = Rules()) -> Verdict:
    """PASS iff at least ``min_passes`` methods PASS, one of them not ``uninformative``, and
    none is HARM."""
    passed = sorted(name for name, v in verdicts.items() if v.outcome == PASS)
    harmed = sorted(name for name, v in verdicts.items() if v.outcome == HARM)
    missed = []
    if len(passed) < rules.min_passes:
        missed.append(f"{len(passed)} of {len(verdicts)} methods passed, {rules.min_passes} needed")
    if passed and set(passed) <= rules.uninformative:
        missed.append(f"only {', '.join(passed)} passed, whose default collapses")
    if harmed:
        missed.append(f"harm: {', '.join(harmed)}")
    return Verdict(FAIL, tuple(missed)) if missed else Verdict(PASS)


# ---------------------------------------------------------- a user's search: its confirm seeds


@dataclass(frozen=True)
class SeedComparison:
    """tuned − default over one search's seed pairs (one draw of the references)."""

    differences: tuple[float, ...]  # per shared seed, in seed order
    seeds: tuple[int, ...]  # those seeds
    level: float = 0.95

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else math.nan

    @property
    def interval(self) -> tuple[float, float] | None:
        """Two-sided t-interval (S − 1 degrees of freedom: the seed differences taken as
        normal); None with fewer than two pairs or no spread among them."""
        count = len(self.differences)
        if count < 2:
            return None
        sd = float(np.std(self.differences, ddof=1))
        if sd == 0:
            return None
        half = stats.t.ppf(0.5 + self.level / 2, count - 1) * sd / math.sqrt(count)
        return self.mean - half, self.mean + half

    @property
    def p_sign_flip(self) -> float:
        """Exact one-sided sign-flip p over the seed pairs (never below 2^−S)."""
        return sign_flip_p(self.differences) if self.differences else math.nan

    def verdict(self) -> str:
        count = len(self.differences)
        seeds = f"{count} seed{'s' if count != 1 else ''}"
        if count == 0:
            return "not compared: no seed has both a tuned and a default run"
        interval = self.interval
        if interval is None:
            if count == 1:
                why = "one pair gives no interval"
            elif self.mean == 0:
                why = "tuned and default tied on every seed"
            else:
                why = (
                    f"every pair differs by the same {self.mean:+.4g}, which leaves the "
                    "seed-to-seed noise unmeasured"
                )
            return f"inconclusive at {seeds} ({why})"
        low, high = interval
        shown = f"{self.level:.0%} t-interval [{low:+.4g}, {high:+.4g}]"
        if low > 0:
            return f"tuned beat default at {seeds} ({shown} above 0)"
        if high < 0:
            return f"default beat tuned at {seeds} ({shown} below 0)"
        return f"inconclusive at {seeds} ({shown} contains 0)"


def compare_seeds(
    tuned: Mapping[int, float], default: Mapping[int, float], level: float = 0.95
) -> SeedComparison:
    """Pairs by seed: the seeds both configurations ran."""
    shared = tuple(sorted(set(tuned) & set(default)))
    return SeedComparison(tuple(float(tuned[s] - default[s]) for s in shared), shared, level)


# tuned − default over the confirm seeds: its mean and two-sided t-interval (comparison_metrics).
MEAN_DIFFERENCE = "confirm/difference_mean"
LOW_DIFFERENCE, HIGH_DIFFERENCE = "confirm/difference_low", "confirm/difference_high"


def comparison_metrics(comparison: SeedComparison) -> dict[str, float]:
    """The ``confirm/*`` summary of tuned − default over the confirm seeds, as the method's
    MLflow run and the leaderboard's tuned row carry it (the per-seed differences are
    ``confirm/difference`` at step = seed on the run)."""
    low, high = comparison.interval or (math.nan, math.nan)
    return {
        "confirm/pairs": len(comparison.differences),
        MEAN_DIFFERENCE: comparison.mean,
        LOW_DIFFERENCE: low,
        HIGH_DIFFERENCE: high,
        "confirm/sign_flip_p": comparison.p_sign_flip,
    }


ONE_DRAW_NOTE = (
    "All seeds re-train on one draw of the references (data, Original, Gold, person folds): "
    "the draw-to-draw variance, which can be as large as the seed-to-seed one, is not in "
    "this interval; a claim that tuning helps in general needs several draws "
    "(bench/analyse_study.py)."
)
