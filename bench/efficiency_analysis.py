"""Search efficiency at equal budget: the analysis, from the raw file alone.

Reads the lines ``bench/search_efficiency.py`` appends (one per trial of the random pool, the
grid and the live TPE searches; Original's values; the confirm runs of selected configurations)
and writes the tables, the pre-registered verdict (bench/PREREGISTRATION.md, amendment "Search
efficiency at equal budget") and the anytime plot. Nothing here trains; every statistic is a
pure function of the raw lines (STUDY_DESIGN §4).

Arms, each with sampler seeds s = 0..9 paired across arms (seed s of every arm is one pair):

- **RS**: the pool in the order ``rs_order(s)`` (a seeded draw without replacement), every
  trial run to ``max_t``; **RS 2B** the same order at twice the budget;
- **RS+ASHA**: the same order with Ray's ASHA replayed on the pool's full curves (``asha_stops``);
- **TPE**, **TPE+ASHA**: live searches of seed s (``--sampler tpe``, scheduler none / asha);
- **grid**: the grid's trials in the order ``rs_order(s)`` of the grid (Optuna's grid sampler
  also visits its points in a seeded random order), every trial run to ``max_t``.

Budget: B_s = the trial-epochs seed s's 24-trial TPE+ASHA search spent (every epoch a trial
trained and evaluated; a trial ASHA stopped at epoch 2 costs 2). Every arm of pair s is cut at
B_s: an epoch counts if it ends within the budget, and the arm's value at B is the best
feasible objective among those epochs (Original's selection value when none is feasible: no
better than not unlearning).

    python bench/efficiency_analysis.py bench/results/search_efficiency_runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RS, RS_ASHA, TPE, TPE_ASHA, GRID, RS_2B = "RS", "RS+ASHA", "TPE", "TPE+ASHA", "grid", "RS 2B"
ARMS = (RS, RS_ASHA, TPE, TPE_ASHA, GRID, RS_2B)
# Raw-line sources of trial curves: the live arms' searches, the pool and the grid.
LIVE = {"tpe": TPE, "tpe_asha": TPE_ASHA}
POOL, GRID_SOURCE = "pool", "grid"
LEVEL = 0.90  # two-sided Clopper-Pearson interval of P(A > B); its lower bound decides
GATE_STEPS = 2  # headroom: some arm beats Original's selection value by this many steps
NEG_W1 = "neg_forget_distance"


class RawFileError(ValueError):
    """The raw file cannot be analysed; the message says which line and why."""


# ---------------------------------------------------------------- curves and ASHA (pure)


@dataclass(frozen=True)
class Curve:
    """One trial's per-epoch running best as the search saw it: ASHA's score (``best_score``:
    the objective when feasible, far below any objective when not) and the best feasible
    objective so far (−inf while no epoch has been feasible)."""

    scores: tuple[float, ...]
    bests: tuple[float, ...]
    params: dict

    @classmethod
    def of(cls, line: dict) -> Curve:
        epochs = line["epochs"]
        return cls(
            tuple(float(e["best_score"]) for e in epochs),
            tuple(float(e["best_objective"]) if e["feasible"] else -math.inf for e in epochs),
            dict(line["params"]),
        )


def asha_rungs(grace: int, reduction_factor: float, max_t: int) -> list[float]:
    """The epochs at which Ray's ASHAScheduler (one bracket) compares trials, ascending:
    ``min_t · rf^k`` for k < int(log(max_t / min_t) / log(rf) + 1) (ray 2.x
    ``ray/tune/schedulers/async_hyperband.py``, ``_Bracket.__init__``, s = 0)."""
    grace = min(grace, max_t)
    count = int(np.log(max_t / grace) / np.log(reduction_factor) + 1)
    return [grace * reduction_factor**k for k in range(count)]


def asha_stops(
    curves: list[tuple[float, ...]], grace: int, reduction_factor: float, max_t: int
) -> list[int]:
    """Epochs each trial runs when Ray's ASHA sees ``curves`` (per-epoch scores, higher is
    better) one trial after another (``search.max_concurrent`` 1).

    Mirrors ``ray/tune/schedulers/async_hyperband.py``: ``_Bracket.on_result`` records a
    trial's score at the highest rung it has reached and not been recorded at, and stops it
    if the score is below ``np.nanpercentile`` of the rung's earlier scores at
    (1 − 1/rf)·100 (``_Bracket.cutoff``); ``AsyncHyperBandScheduler.on_trial_result`` stops
    a trial at ``max_t`` without recording; ``on_trial_complete`` records its last result.
    A curve shorter than ``max_t`` ended by itself (a collapse). Checked against Ray's own
    scheduler in tests/test_bench_search_efficiency.py."""
    rungs: dict[float, dict[int, float]] = {
        rung: {} for rung in asha_rungs(grace, reduction_factor, max_t)
    }

    def on_result(trial: int, epoch: int, score: float) -> bool:
        for rung in sorted(rungs, reverse=True):
            if epoch < rung or trial in rungs[rung]:
                continue
            recorded = list(rungs[rung].values())
            rungs[rung][trial] = score
            percentile = (1 - 1 / reduction_factor) * 100
            return bool(recorded) and score < np.nanpercentile(recorded, percentile)
        return False

    stops = []
    for trial, curve in enumerate(curves):
        ran = len(curve)
        for epoch, score in enumerate(curve, 1):
            if epoch >= max_t:
                ran = epoch
                break
            if on_result(trial, epoch, score):
                ran = epoch
                break
        if ran:
            on_result(trial, ran, curve[ran - 1])
        stops.append(ran)
    return stops


def rs_order(seed: int, size: int) -> list[int]:
    """Random search with sampler seed ``seed``: the pool's indices drawn without replacement
    by ``numpy.random.default_rng(seed)``, so every arm of seed s that reads the pool (RS,
    RS+ASHA, RS 2B) sees the same configurations in the same order."""
    return [int(i) for i in np.random.default_rng(seed).permutation(size)]


def events(curves: list[Curve], costs: list[int]) -> list[tuple[int, float]]:
    """Every trial-epoch of an arm in order: (trial, the trial's best feasible objective
    after that epoch). ``costs[i]`` epochs of trial i run, one trial after another."""
    return [
        (trial, curve.bests[epoch])
        for trial, (curve, cost) in enumerate(zip(curves, costs, strict=True))
        for epoch in range(cost)
    ]


def best_so_far(run: list[tuple[int, float]], floor: float) -> list[float]:
    """The anytime curve: after t trial-epochs (index t − 1), the value ``at_budget`` gives at
    t: the best feasible objective seen, ``floor`` (Original's value) before any feasible one."""
    best, curve = -math.inf, []
    for _, value in run:
        best = max(best, value)
        curve.append(best if best > -math.inf else floor)
    return curve


def at_budget(run: list[tuple[int, float]], budget: int, floor: float) -> tuple[float, int | None]:
    """(value, selected trial) after ``budget`` trial-epochs: the best feasible objective of
    the epochs that end within the budget and the trial that reached it first (None, value
    ``floor``, when none was feasible)."""
    value, selected = floor, None
    for trial, best in run[:budget]:
        if best > -math.inf and (selected is None or best > value):
            value, selected = best, trial
    return value, selected


def epochs_to(run: list[tuple[int, float]], target: float) -> int | None:
    """Trial-epochs until the best feasible objective reaches ``target``; None if never."""
    return next((t for t, (_, value) in enumerate(run, 1) if value >= target), None)


# ---------------------------------------------------------------- the lattice (pure)


def ks_log_p(k: int, n: int) -> float:
    """log p of the two-sided two-sample KS test with n items a side at D = k/n, as the
    objective computes it (``clear_ray.eval.metrics.forget_quality``: scipy ``ks_2samp``,
    exact for these n): two samples built to be k/n apart."""
    from scipy.stats import ks_2samp

    from clear_ray.eval.metrics import log_forget_quality

    if k <= 0:
        return 0.0
    base = np.arange(n, dtype=float)
    return log_forget_quality(float(ks_2samp(base, base + k - 0.5).pvalue))


def lattice_step(tasks: dict[str, list[float]]) -> float:
    """One lattice step of log FQ at a point: the smallest drop in the objective (Fisher's
    combination of the tasks' KS log p, ``clear_ray.eval.metrics.combined_log_p``) that one
    more item apart on one task makes, D_t = k/n_t → (k + 1)/n_t (``metrics.ks_statistic``:
    D is a multiple of 1/n). At a point where every task is at D = 1 (nothing further apart),
    the smallest rise one item closer makes. ``tasks``: task → [log p, D, n] at the point."""
    from clear_ray.eval.metrics import combined_log_p

    names = sorted(tasks)
    if not names:
        raise RawFileError("a point without per-task KS values has no lattice step")
    logs = [float(tasks[name][0]) for name in names]
    value = combined_log_p(logs)
    moves: dict[int, list[float]] = {1: [], -1: []}
    for index, name in enumerate(names):
        _, d, n = tasks[name]
        k, n = round(float(d) * float(n)), round(float(n))
        for move in (1, -1):
            if 0 <= k + move <= n:
                moved = [*logs[:index], ks_log_p(k + move, n), *logs[index + 1 :]]
                moves[move].append(abs(value - combined_log_p(moved)))
    return min(moves[1] or moves[-1])


def w1_step(original_distance: float, items: int) -> float:
    """The W1 objective's step: Original's W1 over the items, the mean change that moving
    one item's log truth ratio from Original's place to Gold's makes (W1 of two n-item
    samples is the mean gap of their sorted values)."""
    return original_distance / items


# ---------------------------------------------------------------- statistics (pure)


def win_share(left: list[float], right: list[float]) -> float:
    """Wins of ``left`` over ``right`` over paired values, a tie counting ½."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(left, right, strict=True))


def clopper_pearson(successes: float, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of a probability (beta quantiles; a tie's ½ makes
    ``successes`` fractional, which the beta form takes as is)."""
    from scipy.stats import beta

    tail = (1 - level) / 2
    low = 0.0 if successes <= 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes >= trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return low, high


def median_or_inf(values: list[int | None]) -> float:
    """Median with a never-reached (None) as +inf: it ranks last, and a median it sets says
    most runs did not reach."""
    return float(statistics.median([math.inf if v is None else v for v in values]))


@dataclass(frozen=True)
class Pair:
    """One (method, seed): each arm's value at B_s and trial-epochs to the target."""

    method: str
    seed: int
    budget: int
    value: dict[str, float]
    to_target: dict[str, int | None]


def verdict(pairs: list[Pair]) -> dict:
    """The pre-registered rule over the pairs of the methods that pass the headroom gate.

    PASS iff (1) the two-sided 90 % Clopper-Pearson interval of P(TPE+ASHA > RS) at B, ties
    ½, over the pairs lies above 0.5 at its lower bound; (2) the median trial-epochs
    TPE+ASHA needs to reach the target is ≤ ½ of RS's (never reached = +inf); (3) TPE+ASHA is
    not worse than TPE: the lower bound of P(TPE > TPE+ASHA) is not above 0.5. Beside it,
    whether TPE+ASHA beats RS at 2B (the same interval rule)."""
    if not pairs:
        return {"verdict": "NO HEADROOM", "pairs": 0}

    def probability(a: str, b: str) -> dict:
        k = win_share([p.value[a] for p in pairs], [p.value[b] for p in pairs])
        low, high = clopper_pearson(k, len(pairs))
        return {"estimate": k / len(pairs), "low": low, "high": high}

    over_rs = probability(TPE_ASHA, RS)
    tpe_over = probability(TPE, TPE_ASHA)
    over_2b = probability(TPE_ASHA, RS_2B)
    ours = median_or_inf([p.to_target[TPE_ASHA] for p in pairs])
    theirs = median_or_inf([p.to_target[RS] for p in pairs])
    checks = {
        "beats_rs": over_rs["low"] > 0.5,
        "half_the_epochs": ours <= theirs / 2,
        "not_worse_than_tpe": tpe_over["low"] <= 0.5,
    }
    return {
        "verdict": "PASS" if all(checks.values()) else "FAIL",
        "pairs": len(pairs),
        "p_tpe_asha_over_rs": over_rs,
        "p_tpe_over_tpe_asha": tpe_over,
        "p_tpe_asha_over_rs_2b": over_2b,
        "beats_rs_2b": over_2b["low"] > 0.5,
        "median_epochs_to_target": {TPE_ASHA: ours, RS: theirs},
        **checks,
    }


# ---------------------------------------------------------------- from raw lines


@dataclass(frozen=True)
class Settings:
    """What the study ran (the raw file's first line, ``kind`` "settings")."""

    objective: str
    max_t: int
    grace: int
    reduction_factor: float
    seeds: tuple[int, ...]
    methods: tuple[str, ...]


def read_raw(paths: list[Path]) -> list[dict]:
    lines = []
    for path in paths:
        for number, text in enumerate(path.read_text().splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError as error:
                raise RawFileError(f"{path}:{number}: not JSON ({error})") from None
            if "kind" not in line:
                raise RawFileError(f"{path}:{number}: no 'kind'")
            lines.append(line)
    return lines


def settings_of(lines: list[dict]) -> Settings:
    found = {
        json.dumps(line["settings"], sort_keys=True) for line in lines if line["kind"] == "settings"
    }
    if len(found) != 1:
        raise RawFileError(f"the raw file needs exactly one settings record, has {len(found)}")
    values = json.loads(found.pop())
    return Settings(
        values["objective"], int(values["max_t"]), int(values["grace"]),
        float(values["reduction_factor"]), tuple(values["seeds"]), tuple(values["methods"]),
    )  # fmt: skip


def curves_of(lines: list[dict], method: str, source: str, seed: int | None = None) -> list[Curve]:
    """The trials of one search (or the pool, the grid), in trial order."""
    chosen = [
        line for line in lines
        if line["kind"] == "trial" and line["method"] == method and line["source"] == source
        and line.get("seed") == seed
    ]  # fmt: skip
    return [Curve.of(line) for line in sorted(chosen, key=lambda line: line["trial"])]


def original_of(lines: list[dict], method: str) -> dict:
    found = [line for line in lines if line["kind"] == "original" and line["method"] == method]
    if not found:
        raise RawFileError(f"{method}: no line with Original's values")
    return found[-1]


def step_at(settings: Settings, point: dict, original: dict) -> float:
    """One step of the objective at ``point`` (its per-task [log p, D, n]): the KS lattice
    step for log FQ, Original's W1 over the items for W1 (constant)."""
    if settings.objective == NEG_W1:
        selection = original["selection"]
        items = sum(round(task[2]) for task in selection["tasks"].values())
        return w1_step(-float(selection["objective"]), items)
    return lattice_step(point["tasks"])


def pool_best(lines: list[dict], method: str) -> dict | None:
    """The pool's best feasible epoch: its objective and per-task values."""
    best = None
    for line in lines:
        if line["kind"] == "trial" and line["method"] == method and line["source"] == POOL:
            for epoch in line["epochs"]:
                if epoch["epoch_feasible"] and (
                    best is None or epoch["objective"] > best["objective"]
                ):
                    best = epoch
    return best


def arm_runs(
    settings: Settings,
    pool: list[Curve],
    grid: list[Curve],
    live: dict[str, list[Curve]],
    seed: int,
) -> dict[str, list[tuple[int, float]]]:
    """Every arm's trial-epochs of seed ``seed``, unbudgeted (the pool's whole order)."""
    order = [pool[i] for i in rs_order(seed, len(pool))]
    grid_order = [grid[i] for i in rs_order(seed, len(grid))]
    full = [len(c.bests) for c in order]
    asha = asha_stops(
        [c.scores for c in order], settings.grace, settings.reduction_factor, settings.max_t
    )
    runs = {
        RS: events(order, full),
        RS_2B: events(order, full),
        RS_ASHA: events(order, asha),
        GRID: events(grid_order, [len(c.bests) for c in grid_order]),
    }
    for arm, curves in live.items():
        runs[arm] = events(curves, [len(c.bests) for c in curves])
    return runs


def analyse(lines: list[dict]) -> dict:
    """Per method: the gate, each arm's values at B and epochs to the target per seed, the
    anytime curves; over the gated methods' pairs, the verdict."""
    settings = settings_of(lines)
    methods, pairs = {}, []
    for method in settings.methods:
        original = original_of(lines, method)
        floor = float(original["selection"]["objective"])
        pool, grid = curves_of(lines, method, POOL), curves_of(lines, method, GRID_SOURCE)
        if not pool:
            raise RawFileError(f"{method}: no pool trial")
        best = pool_best(lines, method)  # None: no feasible pool epoch, no target
        target = None if best is None else best["objective"] - step_at(settings, best, original)
        gate_step = step_at(settings, original["selection"], original)
        method_pairs, anytime, selections = [], {arm: [] for arm in ARMS}, []
        for seed in settings.seeds:
            live = {arm: curves_of(lines, method, source, seed) for source, arm in LIVE.items()}
            if not all(live.values()):
                continue  # a pair not run (yet): it is missing, not zero
            runs = arm_runs(settings, pool, grid, live, seed)
            budget = len(runs[TPE_ASHA])
            values, chosen = {}, {}
            for arm in ARMS:
                limit = 2 * budget if arm == RS_2B else budget
                values[arm], trial = at_budget(runs[arm], limit, floor)
                source = {TPE: live[TPE], TPE_ASHA: live[TPE_ASHA], GRID: grid}.get(arm)
                curves = (
                    source if source is not None else [pool[i] for i in rs_order(seed, len(pool))]
                )
                chosen[arm] = None if trial is None else curves[trial].params
                anytime[arm].append(best_so_far(runs[arm][:limit], floor))
            to_target = {
                arm: None if target is None else epochs_to(runs[arm], target) for arm in ARMS
            }
            method_pairs.append(Pair(method, seed, budget, values, to_target))
            selections.append({"seed": seed, "budget": budget, "selected": chosen})
        top = max((v for p in method_pairs for v in p.value.values()), default=floor)
        gated = top >= floor + GATE_STEPS * gate_step
        if gated:
            pairs += method_pairs
        methods[method] = {
            "original_selection": floor,
            "original_report": original.get("report", {}).get("objective"),
            "pool_size": len(pool),
            "grid_size": len(grid),
            "pool_best": None if best is None else best["objective"],
            "target": target,
            "gate_step": gate_step,
            "best_value": top,
            "gated": gated,
            "pairs": method_pairs,
            "anytime": anytime,
            "selections": selections,
            "report_values": report_values(lines, method, selections, original),
        }
    return {"settings": settings, "methods": methods, "verdict": verdict(pairs)}


def report_values(lines: list[dict], method: str, selections: list[dict], original: dict) -> dict:
    """Per arm, the report-fold value of each seed's selected configuration: the mean over its
    confirm runs (an infeasible run counted as Original's report value); None where the
    configuration has no confirm line (yet)."""
    floor = original.get("report", {}).get("objective")
    confirmed = {
        json.dumps(line["params"], sort_keys=True): line["runs"]
        for line in lines if line["kind"] == "confirm" and line["method"] == method
    }  # fmt: skip
    values: dict[str, list[float | None]] = {arm: [] for arm in ARMS}
    for selection in selections:
        for arm in ARMS:
            params = selection["selected"][arm]
            runs = confirmed.get(json.dumps(params, sort_keys=True)) if params else None
            if params is None:
                values[arm].append(floor)
            elif runs:
                values[arm].append(statistics.fmean(
                    r["objective"] if r["feasible"] or floor is None else floor for r in runs
                ))  # fmt: skip
            else:
                values[arm].append(None)
    return values


def selected_configurations(lines: list[dict]) -> dict[str, list[dict]]:
    """Per method, the distinct configurations some arm selects at B: what needs confirm runs."""
    result = analyse(lines)
    wanted: dict[str, list[dict]] = {}
    for method, record in result["methods"].items():
        seen = []
        for selection in record["selections"]:
            for params in selection["selected"].values():
                if params is not None and params not in seen:
                    seen.append(params)
        wanted[method] = seen
    return wanted


# ---------------------------------------------------------------- tables and plot


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return "never" if value == math.inf else f"{value:.{digits}g}"


def _quartiles(values: list[float]) -> str:
    finite = [v for v in values if v is not None]
    if not finite:
        return "–"
    q1, q2, q3 = np.percentile(finite, [25, 50, 75])
    return f"{q2:.4g} [{q1:.4g}, {q3:.4g}]"


def markdown(result: dict, raw: str, plot: str) -> str:
    """The bench/RESULTS.md section: per method the gate and each arm's value at B (selection
    fold), its report-fold value and epochs to the target; then the verdict."""
    settings, v = result["settings"], result["verdict"]
    lines = [
        "## Search efficiency at equal budget",
        "",
        f"Objective `{settings.objective}` (higher is better), {settings.max_t} epochs per "
        f"trial, ASHA grace {settings.grace} and factor {settings.reduction_factor:g}, sampler "
        f"seeds {', '.join(map(str, settings.seeds))} paired across arms. B = the trial-epochs "
        "of each seed's TPE+ASHA search. Median [IQR] over seeds.",
        "",
    ]
    for method, record in result["methods"].items():
        gate = "counts" if record["gated"] else "**no headroom**: left out of the verdict"
        lines += [
            f"### {method}",
            "",
            f"Original (selection fold) {_num(record['original_selection'])}, one step there "
            f"{_num(record['gate_step'], 3)}; best of any arm {_num(record['best_value'])}: "
            f"{gate}. Pool of {record['pool_size']}: best {_num(record['pool_best'])}, target "
            f"(one step below) {_num(record['target'])}. B: "
            f"{_quartiles([p.budget for p in record['pairs']])} trial-epochs.",
            "",
            "| arm | value at B (selection) | report-fold value of its pick | trial-epochs to "
            "target (reached) |",
            "|---|---|---|---|",
        ]
        for arm in ARMS:
            to = [p.to_target[arm] for p in record["pairs"]]
            reached = sum(t is not None for t in to)
            median = _num(median_or_inf(to) if to else None)
            lines.append(
                f"| {arm} | {_quartiles([p.value[arm] for p in record['pairs']])} | "
                f"{_quartiles(record['report_values'][arm])} | {median} "
                f"({reached}/{len(to)}) |"
            )
        lines.append("")
    lines += ["### Verdict", ""]
    if v["verdict"] == "NO HEADROOM":
        lines.append("**NO HEADROOM**: no method has an arm 2 steps above Original; no verdict.")
    else:

        def interval(p: dict) -> str:
            return f"{p['estimate']:.2f} (90 % CI {p['low']:.2f}–{p['high']:.2f})"

        epochs = v["median_epochs_to_target"]
        lines += [
            f"**{v['verdict']}** over {v['pairs']} (method, seed) pairs of the methods with "
            "headroom.",
            "",
            f"- P(TPE+ASHA > RS) at B: {interval(v['p_tpe_asha_over_rs'])}: "
            f"{'above' if v['beats_rs'] else 'not above'} 0.5",
            f"- median trial-epochs to the target: TPE+ASHA {_num(epochs[TPE_ASHA])}, RS "
            f"{_num(epochs[RS])}: {'≤' if v['half_the_epochs'] else '>'} half",
            f"- P(TPE > TPE+ASHA) at B: {interval(v['p_tpe_over_tpe_asha'])}: TPE+ASHA "
            f"{'not worse' if v['not_worse_than_tpe'] else 'worse'}",
            f"- P(TPE+ASHA > RS at 2B): {interval(v['p_tpe_asha_over_rs_2b'])}: "
            f"{'beats' if v['beats_rs_2b'] else 'does not beat'} RS with twice the budget",
        ]
    lines += ["", f"Raw file: `{raw}`; anytime curves: `{plot}`."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Anytime curves: per method, the median best-so-far over seeds vs trial-epochs per arm,
    with the IQR shaded; B's median marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = result["methods"]
    figure, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False)
    for axis, (method, record) in zip(axes[0], methods.items(), strict=True):
        for arm in ARMS:
            curves = record["anytime"][arm]
            if not curves:
                continue
            width = max(len(c) for c in curves)
            padded = np.array(
                [c + [c[-1]] * (width - len(c)) if c else [np.nan] * width for c in curves]
            )
            q1, q2, q3 = np.nanpercentile(padded, [25, 50, 75], axis=0)
            steps = np.arange(1, width + 1)
            axis.plot(steps, q2, label=arm, drawstyle="steps-post")
            axis.fill_between(steps, q1, q3, alpha=0.15, step="post")
        budgets = [p.budget for p in record["pairs"]]
        if budgets:
            axis.axvline(statistics.median(budgets), color="grey", linestyle=":", label="B")
        if record["target"] is not None:
            axis.axhline(
                record["target"], color="black", linewidth=0.5, linestyle="--", label="target"
            )
        axis.set(title=method, xlabel="trial-epochs", ylabel=result["settings"].objective)
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_outputs(raw: list[Path], markdown_path: Path, plot_path: Path) -> str:
    """Analyse the raw file(s); write the markdown and the plot; return the markdown."""
    result = analyse(read_raw(raw))
    text = markdown(result, ", ".join(map(str, raw)), str(plot_path))
    plot(result, plot_path)
    markdown_path.write_text(text)
    return text


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/efficiency_analysis.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("raw", type=Path, nargs="+", help="raw JSONL file(s)")
    parser.add_argument("--markdown", type=Path, default=None, help="default: RAW with .md")
    parser.add_argument("--plot", type=Path, default=None, help="default: RAW with .png")
    args = parser.parse_args(argv)
    markdown_path = args.markdown or args.raw[0].with_suffix(".md")
    plot_path = args.plot or args.raw[0].with_suffix(".png")
    try:
        out(write_outputs(args.raw, markdown_path, plot_path))
    except (OSError, RawFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
