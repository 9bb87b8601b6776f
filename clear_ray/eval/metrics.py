"""CLEAR/TOFU evaluation metrics as pure functions of per-item arrays (spec §5).

Inputs are per-item mean token NLLs ℓ (teacher forced) or truth ratios, so every aggregate
can be recomputed later from the stored per-item values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln, logsumexp, rel_entr
from scipy.stats import ks_2samp, wasserstein_distance


def _checked(name: str, values: ArrayLike, ndim: int, n: int | None = None) -> NDArray[np.float64]:
    """``values`` as a float64 array after rejecting wrong ndim, emptiness, NaN or a length ≠ n."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim}-d array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: empty array (shape {array.shape})")
    if np.isnan(array).any():
        raise ValueError(f"{name}: contains NaN")
    if n is not None and array.shape[0] != n:
        raise ValueError(
            f"{name}: expected {n} items to match the first argument, got {len(array)}"
        )
    return array


def _perturbed_rows(name: str, values: ArrayLike, n: int) -> list[NDArray[np.float64]]:
    """The n items' distractor NLLs as rows, from an [n, k] array or n rows of k_i values each."""
    if isinstance(values, np.ndarray) and values.ndim != 2:
        raise ValueError(f"{name}: expected 2-d array or n rows, got shape {values.shape}")
    rows = [np.asarray(row, dtype=np.float64) for row in values]
    if len(rows) != n:
        raise ValueError(f"{name}: expected {n} items to match the first argument, got {len(rows)}")
    if any(row.ndim != 1 or row.size == 0 for row in rows):
        raise ValueError(f"{name}: every item needs a non-empty 1-d row of distractor NLLs")
    if any(np.isnan(row).any() for row in rows):
        raise ValueError(f"{name}: contains NaN")
    return rows


def _checked_ratios(name: str, values: ArrayLike, n: int | None = None) -> NDArray[np.float64]:
    array = _checked(name, values, ndim=1, n=n)
    if (array < 0).any():
        raise ValueError(f"{name}: truth ratios must be non-negative")
    return array


def probability(nll: ArrayLike) -> float:
    """``prob`` of caption tasks: mean_i exp(−ℓ_i).

    Args:
        nll: mean token NLL of the true target per item, shape [n].
    """
    return float(np.mean(np.exp(-_checked("nll", nll, ndim=1))))


def probability_with_options(nll_true: ArrayLike, nll_options: ArrayLike) -> float:
    """``prob`` of option tasks: mean_i e^{−ℓ_true}/(e^{−ℓ_true} + Σ_k e^{−ℓ_k}).

    Computed in log space (logsumexp) so long answers with large NLLs do not underflow to 0/0.

    Args:
        nll_true: mean token NLL of the true answer per item, shape [n].
        nll_options: mean token NLL of each distractor, shape [n, k]. The caller must have
            removed the true answer from the options already (CLEAR's options lists may contain
            it); it is added here exactly once.
    """
    true = _checked("nll_true", nll_true, ndim=1)
    options = _checked("nll_options", nll_options, ndim=2, n=len(true))
    all_answers = np.concatenate([true[:, None], options], axis=1)
    log_prob = -true - logsumexp(-all_answers, axis=1)
    return float(np.mean(np.exp(log_prob)))


def log_truth_ratios(nll_paraphrased: ArrayLike, nll_perturbed: ArrayLike) -> NDArray[np.float64]:
    """Per-item log truth ratio log TR_i = ℓ_para,i − mean_k ℓ_pert,i,k (TOFU orientation).

    A model that prefers the paraphrase (lower NLL) over the distractors has log TR < 0. The
    mean is per item; CLEAR's code averages the perturbed losses over the whole split instead
    (:func:`clear_truth_ratios`).

    Args:
        nll_paraphrased: mean token NLL of the paraphrased answer, shape [n].
        nll_perturbed: mean token NLL of each perturbed answer, shape [n, k], or n rows of
            k_i values (option tasks may have different distractor counts per item).

    Returns:
        Log truth ratios, shape [n].
    """
    paraphrased = _checked("nll_paraphrased", nll_paraphrased, ndim=1)
    rows = _perturbed_rows("nll_perturbed", nll_perturbed, len(paraphrased))
    return paraphrased - np.array([row.mean() for row in rows])


def truth_ratios(nll_paraphrased: ArrayLike, nll_perturbed: ArrayLike) -> NDArray[np.float64]:
    """Per-item truth ratio TR_i = exp(:func:`log_truth_ratios`), shape [n]."""
    return np.exp(log_truth_ratios(nll_paraphrased, nll_perturbed))


def clear_truth_ratios(nll_paraphrased: ArrayLike, nll_perturbed: ArrayLike) -> NDArray[np.float64]:
    """CLEAR's per-item truth ratio TR_i = exp(m − ℓ_para,i), m = mean of *all* perturbed NLLs.

    CLEAR ``mm/calculate_metrics.py`` takes one scalar m over the whole split
    (``np.array(list(average_perturb_loss.values())).mean()``) and the perturbed-over-paraphrase
    orientation, so a model preferring the paraphrase has TR > 1. With rows of different
    widths m is the mean over every perturbed value of the task (each distractor weighs the
    same, so an item with more distractors weighs more), which is CLEAR's mean when all rows
    have one width.

    Args:
        nll_paraphrased: mean token NLL of the paraphrased answer, shape [n].
        nll_perturbed: mean token NLL of each perturbed answer, shape [n, k], or n rows of k_i.

    Returns:
        CLEAR-form truth ratios, shape [n].
    """
    paraphrased = _checked("nll_paraphrased", nll_paraphrased, ndim=1)
    rows = _perturbed_rows("nll_perturbed", nll_perturbed, len(paraphrased))
    return np.exp(np.concatenate(rows).mean() - paraphrased)


def truth_ratio_score(truth_ratios: ArrayLike, forget: bool) -> float:
    """Aggregate TR: forget tasks mean_i min(TR_i, 1/TR_i), others mean_i max(0, 1 − TR_i).

    On forget tasks the ideal is indifference (TR = 1) in either direction; elsewhere the
    model should prefer the truth (TR → 0).

    Args:
        truth_ratios: per-item TR from :func:`truth_ratios`, shape [n].
        forget: whether the task is a forget task.
    """
    ratios = _checked_ratios("truth_ratios", truth_ratios)
    if forget:
        with np.errstate(divide="ignore"):
            return float(np.mean(np.minimum(ratios, 1.0 / ratios)))
    return float(np.mean(np.maximum(0.0, 1.0 - ratios)))


def forget_quality(tr_model: ArrayLike, tr_gold: ArrayLike) -> float:
    """p-value of the two-sample KS test between the model's and Gold's per-item truth ratios.

    High means the model's TR distribution on the forget set is indistinguishable from a model
    never trained on it (TOFU, https://arxiv.org/abs/2401.06121). Gold against itself gives 1.

    Args:
        tr_model: per-item TR of the evaluated model on a forget-quality task, shape [n].
        tr_gold: Gold's per-item TR on the same items, shape [n].
    """
    model = _checked_ratios("tr_model", tr_model)
    gold = _checked_ratios("tr_gold", tr_gold, n=len(model))
    return float(ks_2samp(model, gold).pvalue)


def ks_statistic(tr_model: ArrayLike, tr_gold: ArrayLike) -> float:
    """The KS statistic D = sup_x |F_model(x) − F_gold(x)| behind :func:`forget_quality`.

    The effect size beside the p-value: with n items a side log p ≈ log 2 − n·D² (the
    asymptotic KS distribution) grows with n at a fixed D, so log FQs of folds or splits of
    different sizes cannot be compared, their D can. D is a multiple of 1/n (the lattice log
    FQ moves on).

    Args:
        tr_model, tr_gold: per-item TRs as for :func:`forget_quality`, shape [n].
    """
    model = _checked_ratios("tr_model", tr_model)
    gold = _checked_ratios("tr_gold", tr_gold, n=len(model))
    return float(ks_2samp(model, gold).statistic)


def forget_distance(log_tr_model: ArrayLike, log_tr_gold: ArrayLike) -> float:
    """W1 (earth mover's) distance between the model's and Gold's per-item log truth ratios.

    A continuous measure of how far the model's TR distribution on the forget set is from a
    model never trained on it, in nats: 0 at Gold, and unlike the KS p-value it is not on a
    lattice of 1/n steps and does not grow with n. Log TRs, because TRs are ratios of
    likelihoods (a model twice and half as confident are equally far from Gold). Lower is
    closer to Gold. ``scipy.stats.wasserstein_distance`` on the two samples.

    Args:
        log_tr_model: per-item log TR of the evaluated model (:func:`log_truth_ratios`), [n].
        log_tr_gold: Gold's per-item log TR on the same items, shape [n].
    """
    model = _checked("log_tr_model", log_tr_model, ndim=1)
    gold = _checked("log_tr_gold", log_tr_gold, ndim=1, n=len(model))
    return float(wasserstein_distance(model, gold))


def combined_log_p(log_p_values: Sequence[float]) -> float:
    """Fisher's combination of independent tests: log of P(χ²_2k ≥ −2·Σ log p_i).

    Fisher (1925) rather than Tippett's min p or Stouffer: every test's evidence counts (a
    modality the model still knows cannot hide behind one whose test is coarse), no weights
    need choosing, and one test gives its own p back, so a one-task objective keeps its value.
    It assumes the tests independent: the tasks' item sets are disjoint, though they ask about
    the same persons. Computed in log space with the closed form of the χ² survival function
    for even degrees of freedom, P = e^{−t}·Σ_{j<k} t^j/j! with t = −Σ log p_i, because
    ``scipy.stats.chi2.logsf`` underflows to −inf past p ≈ 1e-308 (any well-separated KS test).

    Args:
        log_p_values: the natural log of each test's p-value (≤ 0), at least one.
    """
    logs = _checked("log_p_values", log_p_values, ndim=1)
    if (logs > 0).any():
        raise ValueError("log_p_values: a log p-value cannot exceed 0")
    t = -float(logs.sum())
    if t == 0.0:
        return 0.0
    terms = [j * np.log(t) - gammaln(j + 1) for j in range(len(logs))]
    return float(min(0.0, -t + logsumexp(terms)))


def js_distance(p: ArrayLike, q: ArrayLike) -> float:
    """``scipy.spatial.distance.jensenshannon(p, q)`` (natural log) with the divergence
    clipped at 0 before the square root.

    scipy normalises both vectors to sum 1 and returns sqrt(JS/2); when they are proportional
    (e.g. every TR of one model 100 times the other's) rounding can leave JS a tiny negative
    and scipy returns nan ([0.1, 0.3] against [10, 30] does). Same formula as scipy 1.17's
    ``jensenshannon``.
    """
    left = np.asarray(p, dtype=np.float64)
    right = np.asarray(q, dtype=np.float64)
    left, right = left / left.sum(), right / right.sum()
    middle = (left + right) / 2.0
    divergence = rel_entr(left, middle).sum() + rel_entr(right, middle).sum()
    return float(np.sqrt(max(divergence, 0.0) / 2.0))


def forget_quality_js(tr_model: ArrayLike, tr_gold: ArrayLike) -> float:
    """1 − Jensen–Shannon distance between 1/TR of the model and of Gold (CLEAR camera-ready).

    scipy normalises each vector to sum to 1 and uses the natural log (:func:`js_distance`).
    Inverting TR gives CLEAR's paraphrase-over-perturbed orientation. Gold against itself
    gives 1. Level-blind: the normalisation makes a model whose every TR is c times Gold's
    score 1 as well, so it compares the items' profile, not how far forgetting went.

    Args:
        tr_model: per-item TR of the evaluated model on a forget-quality task, shape [n].
        tr_gold: Gold's per-item TR on the same items, shape [n].
    """
    model = _checked_ratios("tr_model", tr_model)
    gold = _checked_ratios("tr_gold", tr_gold, n=len(model))
    return 1.0 - js_distance(1.0 / model, 1.0 / gold)


def clear_truth_ratio_score(
    nll_paraphrased: ArrayLike, nll_perturbed: ArrayLike, forget: bool
) -> float:
    """CLEAR's "Truth Ratio" column of a task (``mm/calculate_metrics.py``).

    With TR_i from :func:`clear_truth_ratios`: forget tasks mean_i min(TR_i, 1/TR_i), others
    mean_i max(0, 1 − 1/TR_i). 1/TR_i is a TOFU-orientation ratio, so this is
    :func:`truth_ratio_score` of it; only the scalar perturbed mean differs from ours.

    Args:
        nll_paraphrased: mean token NLL of the paraphrased answer, shape [n].
        nll_perturbed: mean token NLL of each perturbed answer, shape [n, k], or n rows of k_i.
        forget: whether the task is a forget task.
    """
    with np.errstate(divide="ignore"):
        inverse = 1.0 / clear_truth_ratios(nll_paraphrased, nll_perturbed)
    return truth_ratio_score(inverse, forget=forget)


def clear_forget_quality(
    nll_paraphrased: ArrayLike,
    nll_perturbed: ArrayLike,
    gold_nll_paraphrased: ArrayLike,
    gold_nll_perturbed: ArrayLike,
) -> float:
    """CLEAR's forget quality: KS p-value between the model's and Gold's CLEAR-form TRs.

    Each side's TRs use its own scalar perturbed mean (``evaluate_forget_quality`` in CLEAR
    ``mm/calculate_metrics.py``). Gold against itself gives 1.

    Args:
        nll_paraphrased, nll_perturbed: the evaluated model's NLLs, shapes [n] and [n, k].
        gold_nll_paraphrased, gold_nll_perturbed: Gold's NLLs on the same items.
    """
    model = clear_truth_ratios(nll_paraphrased, nll_perturbed)
    gold = clear_truth_ratios(gold_nll_paraphrased, gold_nll_perturbed)
    return forget_quality(model, gold)


def clear_forget_quality_js(
    nll_paraphrased: ArrayLike,
    nll_perturbed: ArrayLike,
    gold_nll_paraphrased: ArrayLike,
    gold_nll_perturbed: ArrayLike,
) -> float:
    """CLEAR camera-ready forget quality: 1 − jensenshannon(TR_model, TR_gold), CLEAR-form TRs.

    CLEAR ``mm/build_vllm_table.py`` reports ``1 - JS metric``; scipy normalises each vector
    to sum 1 and uses the natural log. Gold against itself gives 1, and so does any model
    whose TRs are all c times Gold's (level-blind; :func:`forget_quality_js`); where scipy
    returns nan for such vectors this gives 1 (:func:`js_distance`). Arguments as
    :func:`clear_forget_quality`.
    """
    model = clear_truth_ratios(nll_paraphrased, nll_perturbed)
    gold = clear_truth_ratios(gold_nll_paraphrased, gold_nll_perturbed)
    return 1.0 - js_distance(model, _checked_ratios("gold TRs", gold, n=len(model)))


def rouge_l_recall(predictions: list[str], references: list[str]) -> NDArray[np.float64]:
    """Per-item ROUGE-L recall of each generation against its true target (Porter stemmer).

    Args:
        predictions: greedy generations, length n.
        references: true targets, length n.

    Returns:
        Recall values in [0, 1], shape [n].
    """
    if not predictions or len(predictions) != len(references):
        raise ValueError(
            f"need the same non-zero number of predictions and references, got "
            f"{len(predictions)} and {len(references)}"
        )
    from rouge_score import rouge_scorer  # imports nltk (~1 s): only evaluations that generate

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array(
        [
            scorer.score(target=reference, prediction=prediction)["rougeL"].recall
            for prediction, reference in zip(predictions, references, strict=True)
        ]
    )


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean of non-negative scores; any zero gives 0 (one failed task sinks the split).

    Args:
        values: the scores to aggregate (prob, truth ratio, ROUGE of each task), length ≥ 1.
    """
    scores = _checked("values", values, ndim=1)
    if (scores < 0).any():
        raise ValueError("values: harmonic mean needs non-negative scores")
    if (scores == 0).any():
        return 0.0
    return float(len(scores) / np.sum(1.0 / scores))


def log_forget_quality(p_value: float) -> float:
    """Natural log of a forget-quality p-value (the CLEAR v1 tables' "log FQ").

    ``ks_2samp`` p-values underflow to exactly 0.0 for well-separated samples; they are clipped
    to the smallest positive normal float (log ≈ −708.4) so the objective stays finite and
    ordered for Optuna instead of becoming −inf.

    Args:
        p_value: a p-value in [0, 1].
    """
    if not 0.0 <= p_value <= 1.0:  # also rejects NaN
        raise ValueError(f"p_value must lie in [0, 1], got {p_value}")
    return float(np.log(max(p_value, np.finfo(np.float64).tiny)))
