"""The report's tables and sentences, from a :class:`SearchRecord`: plain strings, no markup.

Table 1 follows CLEAR's (arXiv 2410.18057, Table 1; columns of CLEAR ``mm/build_vllm_table.py``
as in CLEAR_SPEC §5): Original, Gold, then each method with its default and its tuned
configuration, as mean ± sd over the confirm seeds (re-trainings of the configuration with fresh
seeds, evaluated on the report fold) when there are any, else the search's single final run; and
the paired difference tuned − default over those seeds with a verdict that may be
"inconclusive" (``paired_table``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from clear_ray.console import counted
from clear_ray.errors import ConfigError
from clear_ray.eval.names import FORGET_CAPTIONS, ITEM_COUNT, KS_STATISTIC, is_item_count
from clear_ray.report.inputs import REFERENCES, MethodRecord, SearchRecord
from clear_ray.robust.checks import ROBUST_CHECKS
from clear_ray.search.confirm import mean_and_sd as seed_mean_sd
from clear_ray.search.confirm import seed_comparison
from clear_ray.search.diagnostics import expected_best
from clear_ray.search.results import (
    NET_RECOVERY,
    PAIRED_HEADER,
    WORST_NORMALISED,
    paired_caption,
    paired_rows,
)
from clear_ray.train.keys import BEST_OBJECTIVE, FEASIBLE
from clear_ray.train.selection import Thresholds

# log FQ with its KS statistic D and the items a side n (search/results.py LEADERBOARD).
TABLE1 = (
    ("Real", "clear/real_metric"),
    ("Retain", "clear/retain_metric"),
    ("Forget", "clear/forget_metric"),
    ("log FQ", "clear/log_forget_quality"),
    ("D", f"clear/{KS_STATISTIC}"),
    ("n", f"{FORGET_CAPTIONS}/{ITEM_COUNT}"),
    ("1 − JS", "clear/forget_quality_js"),
)
CONFIGURATIONS = ("default", "tuned")
L1 = "regularizer.l1"
DASH = "—"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


def number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else DASH


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` (sample sd, n − 1) of the finite values; the value alone for one."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return DASH
    mean, sd = seed_mean_sd(values)
    return number(mean) if sd is None else f"{mean:.4g} ± {sd:.2g}"


def seed_cells(configuration: dict[str, Any]) -> list[str]:
    """Table 1 cells of a confirm.json configuration, from its runs' metrics (mean/sd fields
    only when it lists no runs)."""
    runs = configuration.get("runs") or []
    cells = []
    for _, metric in TABLE1:
        values = [float(r["metrics"][metric]) for r in runs if metric in r.get("metrics", {})]
        if values:
            cells.append(number(values[0]) if is_item_count(metric) else mean_sd(values))
        else:
            mean = float(configuration.get("mean", {}).get(metric, math.nan))
            sd = float(configuration.get("sd", {}).get(metric, math.nan))
            cells.append(f"{mean:.4g} ± {sd:.2g}" if math.isfinite(sd) else number(mean))
    return cells


def feasible_seeds(configuration: dict[str, Any]) -> str:
    """``k/n`` of the runs that met the thresholds (``feasible_fraction`` without runs)."""
    runs = configuration.get("runs") or []
    if runs:
        return f"{sum(bool(run.get('feasible')) for run in runs)}/{len(runs)}"
    fraction = float(configuration.get("feasible_fraction", math.nan))
    return f"{fraction:.0%}" if math.isfinite(fraction) else DASH


def method_rows(method: MethodRecord) -> list[list[str]]:
    confirm = method.confirm or {}
    configurations = confirm.get("configurations", {})
    rows = []
    for label in CONFIGURATIONS:
        model = f"{method.name} ({label})"
        found = configurations.get(label)
        if found:
            runs = found.get("runs") or []
            seeds = len(runs) or len(confirm.get("seeds", []))
            where = f"{counted(seeds, 'seed')}, {confirm.get('fold', '?')} fold"
            rows.append([model, *seed_cells(found), feasible_seeds(found), where])
        elif label == "tuned" and method.outcome.get("metrics"):
            metrics = method.outcome["metrics"]
            values = [number(float(metrics.get(key, math.nan))) for _, key in TABLE1]
            where = f"1 run (final evaluation of trial {method.outcome.get('trial', '?')})"
            rows.append([model, *values, method.outcome.get("feasible", DASH), where])
        else:
            rows.append([model, *[DASH] * len(TABLE1), DASH, "not evaluated"])
    return rows


def table1(record: SearchRecord) -> Table:
    rows = []
    for name in REFERENCES:
        metrics = record.references.get(name, {})
        values = [number(metrics.get(key, math.nan)) for _, key in TABLE1]
        rows.append([name, *values, "", "full evaluation" if metrics else "not found"])
    for method in record.methods:
        rows.extend(method_rows(method))
    header = ["model", *(column for column, _ in TABLE1), "feasible", "evaluation"]
    return Table(
        header,
        rows,
        "CLEAR's Table 1 columns (clear/* metrics). Real, Retain: higher is better; Forget: "
        "lower is more forgotten (Gold sets the floor); log FQ, 1 − JS: higher is closer to Gold. "
        "D: the KS statistic behind log FQ (0 at Gold), on n forget captions a side; log FQ "
        "grows with n at a fixed D. 1 − JS is level-blind: TRs all c times Gold's score 1.",
    )


def paired_table(record: SearchRecord) -> Table | None:
    """Per method with confirm seeds, tuned − default on the objective paired by seed, its
    t-interval and verdict (the leaderboard's table, search/results.py); None without any."""
    objective = record.config.search.objective
    original = record.references.get("Original", {}).get(objective, math.nan)
    comparisons = {
        method.name: seed_comparison(method.confirm, objective, original)
        for method in record.methods
        if method.confirm
    }
    if not comparisons:
        return None
    return Table(PAIRED_HEADER, paired_rows(comparisons), paired_caption(objective))


def threshold_line(record: SearchRecord) -> str:
    search = record.config.search
    rule = f"{search.retain_metric} >= {search.min_retain:g}"
    if search.min_utility:
        rule += f" and {search.utility_metric} >= {search.min_utility:g}"
    if search.threshold_mode == "relative":
        try:
            thresholds = Thresholds.from_search(search, record.references.get("Original", {}))
            absolute = thresholds.describe()
        except ConfigError:
            absolute = "nan"
        known = "nan" not in absolute
        rule = f"{absolute} ({rule} × Original's)" if known else f"{rule} × Original's"
    return f"Feasible iff {rule}, judged on each full evaluation."


def folds_line(folds: dict[str, Any] | None) -> str:
    if folds is None:
        return "No folds.json: selection and report used the same forget persons."
    selection, report = folds.get("selection", []), folds.get("report", [])
    if not float(folds.get("report_fraction", 0.0)) or not report:
        return "No folds (report fraction 0): selection and report used the same forget persons."
    return (
        f"Selected on {len(selection)} forget persons ({', '.join(selection)}); reported on "
        f"{len(report)} others ({', '.join(report)}); {folds.get('forget_split', '?')}, "
        f"report fraction {folds['report_fraction']:g}, fold seed {folds.get('seed', '?')}."
    )


def trial_params(trials: list[dict[str, str]]) -> list[str]:
    """The searched parameters' columns of trials.csv: between ``stopped_at`` and ``adapter``."""
    if not trials:
        return []
    columns = list(trials[0])
    start = columns.index("stopped_at") + 1 if "stopped_at" in columns else len(columns)
    return [c for c in columns[start:] if c != "adapter"]


def _params_text(params: dict[str, Any]) -> str:
    shown = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return ", ".join(shown) or DASH


def configurations_table(record: SearchRecord) -> Table:
    """Each method's default and tuned values of its searched parameters: confirm.json's, else
    the search config's defaults and the final evaluation's trial row of trials.csv."""
    rows = []
    for method in record.methods:
        configurations = (method.confirm or {}).get("configurations", {})
        names = trial_params(method.trials or [])
        trial = method.outcome.get("trial")
        found = [t for t in method.trials or [] if t.get("trial") == trial]
        fallback = {
            "default": {n: record.state.config[n] for n in names if n in record.state.config},
            "tuned": {name: found[0][name] for name in names} if found else {},
        }
        for label in CONFIGURATIONS:
            params = configurations.get(label, {}).get("params", fallback[label])
            rows.append([method.name, label, _params_text(params)])
    return Table(["method", "configuration", "searched parameters"], rows)


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


L1_ARMS = (("= 0", lambda x: x == 0), ("> 0", lambda x: x > 0))
VERDICT_LEVEL = 0.05  # two-sided Mann–Whitney p below which the L1 table names an arm


def l1_cells(trials: list[dict[str, str]] | None) -> list[str]:
    """Trials with L1 = 0 against L1 > 0, at equal size: each arm's expected best of k feasible
    trials (k = the smaller arm's count, :func:`expected_best`), its counts, and a verdict.

    The grid's one zero against five positive values gives the L1 > 0 arm more draws, and the
    best of more noisy draws is higher by construction: comparing the arms' maxima (or their
    top-k means) answers "does L1 help?" in favour of L1. The verdict comes from a two-sided
    Mann–Whitney test of the arms' feasible objectives, named only when p < 0.05; the trials
    are TPE's draws, not a random sample, so it is indicative, not a matched comparison.
    """
    if trials is None:
        return ["no trials.csv", DASH, DASH]
    if not trials or L1 not in trials[0]:
        return ["L1 not searched", DASH, DASH]
    arms = []
    for name, chosen in L1_ARMS:
        tried = [t for t in trials if chosen(_float(t[L1]))]
        values = [
            _float(t[BEST_OBJECTIVE])
            for t in tried
            if t.get(FEASIBLE) == "yes" and math.isfinite(_float(t[BEST_OBJECTIVE]))
        ]
        arms.append((name, len(tried), values))
    k = min(len(values) for _, _, values in arms)
    cells = []
    for name, tried, values in arms:
        if not tried:
            cells.append(f"no trial with L1 {name} in this search")
        elif not values:
            cells.append(f"none of {tried} trials with L1 {name} feasible")
        else:
            size = k or len(values)  # the other arm has none: nothing to match
            best = number(expected_best(values, size))
            cells.append(f"{best} (best of {size}; {len(values)} of {tried} trials feasible)")
    return [*cells, _l1_verdict(arms[0][2], arms[1][2])]


def _l1_verdict(zero: list[float], positive: list[float]) -> str:
    if not zero or not positive:
        return "cannot tell (an arm has no feasible trial)"
    from scipy.stats import mannwhitneyu

    test = mannwhitneyu(positive, zero, alternative="two-sided")
    p_value = float(test.pvalue)
    if p_value >= VERDICT_LEVEL:
        return f"cannot tell (p {p_value:.2g}, {len(zero)} vs {len(positive)} trials)"
    # U counts the pairs in which the L1 > 0 trial is higher (ties half).
    higher = "L1 > 0" if test.statistic > len(positive) * len(zero) / 2 else "L1 = 0"
    return f"{higher} (p {p_value:.2g})"


def l1_table(record: SearchRecord) -> Table:
    objective = record.config.search.objective
    rows = [[method.name, *l1_cells(method.trials)] for method in record.methods]
    return Table(
        ["method", "L1 = 0", "L1 > 0", "higher (Mann–Whitney p < 0.05)"],
        rows,
        f"{objective} at each feasible trial's best epoch (per-epoch evaluation, the selection "
        "fold's items when there are folds: each value a maximum over epochs). Each arm shows "
        "the expected best of k trials, k = the smaller arm's feasible count, so the arm with "
        "more trials does not win by having more draws.",
    )


ROBUSTNESS_CSV = "robustness.csv"  # beside the report: every robust/* value of every model
ROBUSTNESS_CSV_HEADER = ["method", "model", "check", "metric", "value"]


def _robustness(record: SearchRecord) -> list[tuple[str, str, dict[str, float]]]:
    """(method, model label, its robust/* values) per model a method's robustness.json holds."""
    return [
        (method.name, label, values)
        for method in record.methods
        for label, values in (method.robustness or {}).items()
    ]


def robustness_table(record: SearchRecord) -> Table | None:
    """Per method and model (robustness.json's labels): each check's worst condition as a share
    of Original's knowledge (``robust/<check>/worst_normalised``, 0 = Gold, 1 = Original) and
    the net relearn recovery, the checks some model has; None when no model has one. Every
    variant's value is in :data:`ROBUSTNESS_CSV` (:func:`robustness_rows`)."""
    found = _robustness(record)
    columns = [
        (header, key)
        for header, key in (
            *((check, f"robust/{check}/{WORST_NORMALISED}") for check in ROBUST_CHECKS),
            ("net relearn recovery", NET_RECOVERY),
        )
        if any(key in values for _, _, values in found)
    ]
    if not columns:
        return None
    rows = [
        [method, label, *(number(float(values.get(key, math.nan))) for _, key in columns)]
        for method, label, values in found
    ]
    return Table(
        ["method", "model", *(header for header, _ in columns)],
        rows,
        "Each check's worst condition (quantization scheme, prompt variant, ...) as a share of "
        "the knowledge Original has over Gold: 0 = Gold's level, 1 = Original's; lower is "
        "better. Net relearn recovery: the share of the removed knowledge that the relearning "
        "attack brings back beyond what it teaches Gold (docs/robustness.md). Every check's "
        "value per variant and model: "
        f"{ROBUSTNESS_CSV}.",
    )


def robustness_rows(record: SearchRecord) -> list[list[str]]:
    """:data:`ROBUSTNESS_CSV`'s rows: one per method, model and ``robust/<check>/<metric>``."""
    rows = []
    for method, label, values in _robustness(record):
        for key, value in sorted(values.items()):
            check, _, metric = key.removeprefix("robust/").partition("/")
            rows.append([method, label, check, metric, repr(float(value))])
    return rows


def missing_notes(record: SearchRecord) -> list[str]:
    """What the folder lacks, one line each, so no number is read as more than it is."""
    notes = []
    if record.folds is None:
        notes.append("no folds.json: selection and report on the same persons")
    unconfirmed = [m.name for m in record.methods if m.confirm is None]
    if unconfirmed:
        notes.append(
            f"no confirm seeds for {', '.join(unconfirmed)}: single-run numbers, "
            "selection = report; no default-configuration row"
        )
    for method in record.methods:
        if method.trials is None:
            notes.append(f"{method.name}: no trials.csv (no L1 comparison)")
        if not method.outcome:
            notes.append(f"{method.name}: search not finished (no final evaluation)")
    if set(record.references) != set(REFERENCES):
        notes.append("no Original/Gold rows in leaderboard_full.csv")
    if not any(m.robustness for m in record.methods):
        notes.append("no robustness.json: no robustness table")
    return notes
