"""The trial table (feasible first, each with its best epoch and adapter) and the leaderboard.

The leaderboard's first columns are CLEAR's Table 1 (``clear/*``: CLEAR_SPEC §5, CLEAR
``mm/build_vllm_table.py``), so a row can be set beside the paper's; the project's extended
aggregates and the search objective follow under their own metric names.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_ray.config import SearchConfig
from clear_ray.eval.names import (
    FORGET_CAPTIONS,
    FORGET_DISTANCE,
    FORGET_TEXT,
    ITEM_COUNT,
    KS_STATISTIC,
    is_item_count,
)
from clear_ray.report.paired import ONE_DRAW_NOTE, SeedComparison
from clear_ray.train.keys import (
    BEST_EPOCH,
    BEST_OBJECTIVE,
    BEST_PREFIX,
    EPOCH,
    FEASIBLE,
    RELEARN_RECOVERY,
    best_key,
)


@dataclass(frozen=True)
class TrialMetrics:
    """Which best-epoch metrics a trial table shows: the constraints' retain and utility
    metrics (``search.retain_metric``/``utility_metric``) and the forget metric of the same
    family (CLEAR's columns or the extended ones); the trial-end relearn recovery when it is a
    constraint (``search.constrain_relearn``).
    """

    retain: str = SearchConfig.retain_metric
    utility: str = SearchConfig.utility_metric
    relearn: bool = False

    @classmethod
    def of(cls, search: SearchConfig) -> TrialMetrics:
        return cls(
            search.retain_metric, search.utility_metric, search.constrain_relearn is not None
        )

    @property
    def forget(self) -> str:
        return "clear/forget_metric" if self.retain.startswith("clear/") else "forget_metric"

    def columns(self) -> tuple[str, ...]:
        return (
            "trial",
            "number",
            "status",
            FEASIBLE,
            BEST_OBJECTIVE,
            best_key(self.forget),
            best_key(self.retain),
            best_key(self.utility),
            BEST_EPOCH,
            "stopped_at",
            *(("relearn_recovery",) if self.relearn else ()),
        )


@dataclass(frozen=True)
class TrialRow:
    trial: str
    number: int  # creation order within the search
    status: str  # done | error
    feasible: bool
    best_objective: float
    best_forget_metric: float  # TrialMetrics.forget
    best_retain_metric: float  # TrialMetrics.retain: the retain constraint's metric
    best_model_utility: float  # TrialMetrics.utility
    best_epoch: int
    stopped_at: int  # last epoch run (< epochs when ASHA or a collapse stopped it)
    params: dict[str, Any]
    adapter: str  # local copy of the best epoch's adapter ("" if none)
    best: dict[str, float] = field(default_factory=dict)  # the last report's best_* values
    relearn_recovery: float = math.nan  # at the trial's end (search.constrain_relearn)
    error: str = ""  # a failed trial's reason: the last line of its error

    def cells(self, param_names: list[str], shown: TrialMetrics = TrialMetrics()) -> list[str]:
        values = [
            self.trial,
            str(self.number),
            self.status,
            "yes" if self.feasible else "no",
            f"{self.best_objective:.4g}",
            f"{self.best_forget_metric:.4g}",
            f"{self.best_retain_metric:.4g}",
            f"{self.best_model_utility:.4g}",
            str(self.best_epoch),
            str(self.stopped_at),
            *((f"{self.relearn_recovery:.4g}",) if shown.relearn else ()),
        ]
        return values + [_fmt(self.params.get(name)) for name in param_names]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# Tune names a trial's folder <trainable>_<trial id>_<creation number>_<params>_<time>.
_TRIAL_FOLDER = re.compile(r"_([0-9a-f]{5,})_(\d+)(?:_|$)")


def trial_identity(folder: str) -> tuple[str, int]:
    """(trial id, creation number) from a Tune trial folder name; ("?", -1) if unrecognised."""
    found = _TRIAL_FOLDER.search(folder)
    return (found.group(1), int(found.group(2))) if found else ("?", -1)


def trial_ids(results) -> list[str]:
    """The ids of a Tune ``ResultGrid``'s trials (a restored grid's included)."""
    return [trial_identity(Path(result.path).name)[0] for result in results]


def trial_rows(results, adapters_dir: Path, shown: TrialMetrics = TrialMetrics()) -> list[TrialRow]:
    """Rows from a Tune ``ResultGrid``, sorted feasible first, then by objective; ties go to
    the earlier trial, so a restored grid (whose order may differ) picks the same best."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        trial, number = trial_identity(Path(result.path).name)
        adapter = adapters_dir / trial

        def value(key: str, metrics: dict = metrics) -> float:
            return float(metrics.get(key, math.nan))

        rows.append(
            TrialRow(
                trial=trial,
                number=number,
                status="error" if result.error else "done",
                feasible=bool(metrics.get(FEASIBLE, 0.0)) and not result.error,
                best_objective=value(BEST_OBJECTIVE),
                best_forget_metric=value(best_key(shown.forget)),
                best_retain_metric=value(best_key(shown.retain)),
                best_model_utility=value(best_key(shown.utility)),
                best_epoch=int(metrics.get(BEST_EPOCH, -1)),
                stopped_at=int(metrics.get(EPOCH, 0)),
                params=dict(result.config or {}),
                adapter=str(adapter) if adapter.is_dir() else "",
                best={k: v for k, v in metrics.items() if k.startswith(BEST_PREFIX)},
                relearn_recovery=value(RELEARN_RECOVERY),
                error=error_line(result.error) if result.error else "",
            )
        )
    return sorted(rows, key=lambda r: (not r.feasible, -_finite(r.best_objective), r.number))


def error_line(error: BaseException) -> str:
    """The last line of an error's text: for a trial, the exception its worker or driver raised
    (``safetensors_rust.SafetensorsError: ...``), under Ray's and Tune's wrappers."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def all_failed(method: str, rows: list[TrialRow]) -> str | None:
    """One line when every trial of ``rows`` failed: how many, and the most common reason
    (the first trial's among equally common ones); None when any trial ran to its end."""
    if not rows or any(row.status != "error" for row in rows):
        return None
    reasons = Counter(row.error for row in sorted(rows, key=lambda row: row.number))
    reason, count = reasons.most_common(1)[0]
    total = len(rows)
    return f"{method}: all {total} trials failed; most common reason ({count}/{total}): {reason}"


def _finite(value: float) -> float:
    return value if value == value else float("-inf")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown_table(
    rows: list[TrialRow], param_names: list[str], shown: TrialMetrics = TrialMetrics()
) -> str:
    return markdown(
        [*shown.columns(), *param_names], [row.cells(param_names, shown) for row in rows]
    )


def write_csv(
    rows: list[TrialRow], param_names: list[str], path: Path, shown: TrialMetrics = TrialMetrics()
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*shown.columns(), *param_names, "adapter"])
        for row in rows:
            writer.writerow([*row.cells(param_names, shown), row.adapter])


# (column, metric). CLEAR's Table 1: Real/Retain/Forget and its forget quality on CLEAR's
# truth ratios, as the KS log p-value (v1 tables) with its KS statistic D and items a side n
# (log p grows with n at a fixed D, so only D compares across fold sizes), and 1 − JS
# (camera-ready). Then ours: the objective's columns (eval/suite.py with_objective).
LEADERBOARD = (
    ("Real", "clear/real_metric"),
    ("Retain", "clear/retain_metric"),
    ("Forget", "clear/forget_metric"),
    ("log FQ", "clear/log_forget_quality"),
    ("D", f"clear/{KS_STATISTIC}"),
    ("n", f"{FORGET_CAPTIONS}/{ITEM_COUNT}"),
    ("FQ 1-JS", "clear/forget_quality_js"),
    ("real_metric", "real_metric"),
    ("retain_metric", "retain_metric"),
    ("forget_metric", "forget_metric"),
    ("model_utility", "model_utility"),
    ("log_forget_quality", "log_forget_quality"),
    ("forget_quality_js", "forget_quality_js"),
    ("forget_distance", FORGET_DISTANCE),
)
LEADERBOARD_COLUMNS = ("model", *(column for column, _ in LEADERBOARD), "feasible", "trial")
# Each forget-quality task's own log FQ, D and n, beside the objective that combines them;
# shown for the tasks some row has.
TASK_LABELS = {FORGET_CAPTIONS: "captions", FORGET_TEXT: "text"}
TASK_COLUMNS = tuple(
    (f"{label} {column}", f"{task}/{metric}")
    for task, label in TASK_LABELS.items()
    for column, metric in (
        ("log FQ", "log_forget_quality"),
        ("D", KS_STATISTIC),
        ("n", ITEM_COUNT),
    )
)
# Robustness of each best trial (clear_ray/robust/), shown when a search ran the check.
ROBUSTNESS_COLUMNS = (
    ("relearn recovery", RELEARN_RECOVERY),
    ("Gold recovery", "robust/relearn/gold_recovery"),
    ("int8 forget_metric", "robust/quantize/int8/forget_metric"),
    ("nf4 forget_metric", "robust/quantize/nf4/forget_metric"),
    ("worst-prompt forget_metric", "robust/prompts/worst_forget_metric"),
    ("worst-prompt log_forget_quality", "robust/prompts/worst_log_forget_quality"),
    ("cross-modal log_forget_quality", "robust/cross_modal/log_forget_quality"),
)


def task_summary(metrics: dict[str, float]) -> str:
    """Each forget-quality task's log FQ with its D and n, for a console line ("" if none)."""
    parts = [
        f"{label} log FQ {metrics[f'{task}/log_forget_quality']:.4g} "
        f"(D {metrics.get(f'{task}/{KS_STATISTIC}', math.nan):.3g}, "
        f"n {metrics.get(f'{task}/{ITEM_COUNT}', math.nan):.0f})"
        for task, label in TASK_LABELS.items()
        if f"{task}/log_forget_quality" in metrics
    ]
    return "; ".join(parts)


@dataclass(frozen=True)
class LeaderboardRow:
    """One line of the Table-1-style comparison, from a *full* evaluation (on the report fold).

    Over confirm seeds, ``metrics`` holds the means and ``sd`` the standard deviations, shown
    as ``mean ± sd``; ``feasible`` is then the fraction of seeds that were feasible.
    """

    model: str
    metrics: dict[str, float]
    feasible: str  # yes | no | "" (references) | "2/3" (confirm seeds)
    trial: str = ""
    sd: dict[str, float | None] = field(default_factory=dict)

    def cells(self, extra: tuple[tuple[str, str], ...] = ()) -> list[str]:
        numbers = [self.cell(key) for _, key in (*LEADERBOARD, *extra)]
        return [self.model, *numbers, self.feasible, self.trial]

    def cell(self, key: str) -> str:
        mean = f"{self.metrics.get(key, math.nan):.4g}"
        spread = self.sd.get(key)
        return mean if spread is None or is_item_count(key) else f"{mean} ± {spread:.2g}"


def leaderboard(rows: list[LeaderboardRow], heading: str = "") -> str:
    """The markdown table, under ``heading`` (which folds and seeds the numbers are on); of the
    per-task and robustness columns, those some row has a value of (before feasible)."""
    extra = tuple(
        c for c in (*TASK_COLUMNS, *ROBUSTNESS_COLUMNS) if any(c[1] in row.metrics for row in rows)
    )
    header = [LEADERBOARD_COLUMNS[0], *(c for c, _ in (*LEADERBOARD, *extra)), "feasible", "trial"]
    table = markdown(header, [row.cells(extra) for row in rows])
    return f"{heading}\n\n{table}" if heading else table


PAIRED_HEADER = [
    "method",
    "tuned − default per seed",
    "mean",
    "95 % t-interval",
    "sign-flip p",
    "verdict",
]


def paired_rows(comparisons: dict[str, SeedComparison]) -> list[list[str]]:
    """Per method, its seed pairs' differences, their mean, interval, p and verdict."""
    rows = []
    for method, comparison in comparisons.items():
        interval = comparison.interval
        rows.append(
            [
                method,
                ", ".join(f"{d:+.4g}" for d in comparison.differences) or "—",
                f"{comparison.mean:+.4g}" if comparison.differences else "—",
                f"[{interval[0]:+.4g}, {interval[1]:+.4g}]" if interval else "—",
                f"{comparison.p_sign_flip:.3g}" if comparison.differences else "—",
                comparison.verdict(),
            ]
        )
    return rows


def paired_caption(objective: str) -> str:
    return (
        f"Tuned − default on {objective}, paired by confirm seed (both trained with the same "
        "train.seed), an infeasible run counted as Original's value. Interval: two-sided "
        "95 % t-interval of the mean over the seed differences (S − 1 degrees of freedom); "
        "sign-flip p: exact, one-sided, never below 2^−S. " + ONE_DRAW_NOTE
    )


def paired_section(comparisons: dict[str, SeedComparison], objective: str) -> str:
    """The leaderboard's comparison of each method's tuned and default rows, or ""."""
    if not comparisons:
        return ""
    table = markdown(PAIRED_HEADER, paired_rows(comparisons))
    return f"Did tuning beat the default?\n\n{table}\n\n{paired_caption(objective)}"
