"""The trial table (feasible first, each with its best epoch and adapter) and the leaderboard.

The leaderboard's first columns are CLEAR's Table 1 (``clear/*``: CLEAR_SPEC §5, CLEAR
``mm/build_vllm_table.py``), so a row can be set beside the paper's. Its compact view (the
default) adds the objective, tuned − default and the net relearn recovery; the full view the
project's extended aggregates, each task's forget quality and every robustness value, under
their own metric names; leaderboard_full.csv holds every metric of every row.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clear_ray.config import LEADERBOARD_VIEWS, DataConfig, SearchConfig
from clear_ray.eval.names import (
    FORGET_CAPTIONS,
    FORGET_DISTANCE,
    FORGET_TEXT,
    ITEM_COUNT,
    KS_STATISTIC,
    is_item_count,
    objective_tasks,
)
from clear_ray.paired import (
    HIGH_DIFFERENCE,
    LOW_DIFFERENCE,
    MEAN_DIFFERENCE,
    ONE_DRAW_NOTE,
    SeedComparison,
    comparison_metrics,
)
from clear_ray.robust.checks import ROBUST_CHECKS
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
# (camera-ready). Then ours: the extended aggregates and the objective's columns (eval/suite.py
# with_objective). The full view shows them all; the compact one CLEAR's five and the objective.
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
# CLEAR's five columns, as its tables print them (CLEAR_SPEC §6: v1 log FQ, camera-ready 1 − JS).
CLEAR_COLUMNS = tuple(
    column
    for column in LEADERBOARD
    if column[0] in ("Real", "Retain", "Forget", "log FQ", "FQ 1-JS")
)
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
# Robustness of each best trial (clear_ray/robust/, docs/robustness.md), shown when a search ran
# the check: the recovery under relearning net of what the same attack teaches Gold, and each
# check's worst condition as a share of Original's knowledge (0 = Gold, 1 = Original).
NET_RECOVERY = "robust/relearn/net_recovery"
WORST_NORMALISED = "worst_normalised"
ROBUSTNESS_COLUMNS = (
    ("net relearn recovery", NET_RECOVERY),
    *((f"{check} worst", f"robust/{check}/{WORST_NORMALISED}") for check in ROBUST_CHECKS),
    ("gross relearn recovery", "robust/relearn/gross_recovery"),
    ("Gold recovery", "robust/relearn/gold_recovery"),
    ("int8 forget_metric", "robust/quantize/int8/forget_metric"),
    ("nf4 forget_metric", "robust/quantize/nf4/forget_metric"),
    ("worst-prompt log_forget_quality", "robust/prompts/worst_log_forget_quality"),
    ("cross-modal log_forget_quality", "robust/cross_modal/log_forget_quality"),
)
PAIRED_COLUMN = "tuned − default"
DASH = "—"  # a value the row does not have (a reference's robustness, a single run's spread)
SD_PREFIX = "sd "  # leaderboard_full.csv: "sd <metric>" beside a metric with a spread
COMPACT, FULL = LEADERBOARD_VIEWS
LEADERBOARD_FILE, LEADERBOARD_CSV = "leaderboard.md", "leaderboard_full.csv"
# The compact view's line under the table: what each shown column is, then where the rest is.
CLEAR_LEGEND = (
    "Real, Retain, Forget, log FQ, FQ 1-JS: CLEAR's Table 1 columns (clear/*; Forget: lower is "
    "more forgotten, Gold the level to reach)."
)
OBJECTIVE_LEGEND = (
    "{objective}: the search objective; D, n: the KS statistic and items a side of each forget "
    "task it compares with Gold."
)
PAIRED_LEGEND = (
    "tuned − default: the objective's mean difference over the confirm seeds, with its 95 % "
    "t-interval (table below)."
)
NET_LEGEND = (
    "net relearn recovery: the share of the removed knowledge a relearning attack brings back "
    "beyond what it teaches Gold (docs/robustness.md)."
)
FILES_LEGEND = f"Every column: {LEADERBOARD_CSV}, or --leaderboard full."


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


def _number(value: float, digits: str = ".4g") -> str:
    return format(value, digits) if value == value else DASH


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

    def value(self, key: str) -> float:
        return float(self.metrics.get(key, math.nan))

    def cell(self, key: str) -> str:
        """``mean ± sd`` (a count, or a single run: the value alone); DASH when it has none."""
        mean = _number(self.value(key))
        spread = self.sd.get(key)
        if mean == DASH or spread is None or is_item_count(key):
            return mean
        return f"{mean} ± {spread:.2g}"

    def paired_cell(self) -> str:
        """tuned − default on the objective: the mean and its t-interval (clear_ray/paired.py)."""
        mean, low, high = (
            self.value(k) for k in (MEAN_DIFFERENCE, LOW_DIFFERENCE, HIGH_DIFFERENCE)
        )
        if mean != mean:
            return DASH
        return f"{mean:+.3g}" + (f" [{low:+.3g}, {high:+.3g}]" if low == low else "")


@dataclass(frozen=True)
class Column:
    """A leaderboard column: its header, the metrics it shows and how a row's cell reads them.
    ``drop_zero``: an evaluation metric that reads 0 on every row tells no model apart (a
    harmonic mean one of whose scores is 0 everywhere): the column is left out."""

    header: str
    keys: tuple[str, ...]
    render: Callable[[LeaderboardRow], str]
    drop_zero: bool = True
    legend: str = ""  # what the compact view says of it under the table

    def shown(self, rows: list[LeaderboardRow]) -> bool:
        """Whether some row has a value, and (``drop_zero``) one that is not 0."""
        values = [row.value(key) for row in rows for key in self.keys]
        values = [value for value in values if value == value]
        return bool(values) and not (self.drop_zero and all(value == 0 for value in values))


def metric_column(header: str, key: str, drop_zero: bool = True, legend: str = "") -> Column:
    return Column(header, (key,), lambda row: row.cell(key), drop_zero, legend)


def tasks_column(name: str, metric: str, digits: str, tasks: tuple[str, ...]) -> Column:
    """``metric`` of each of ``tasks`` in one cell ("0.283 / 0.25"), the header naming them
    ("D (captions / text)": not CLEAR's D, which is of its own truth ratios)."""
    keys = tuple(f"{task}/{metric}" for task in tasks)
    labels = " / ".join(TASK_LABELS[task] for task in tasks)
    return Column(
        f"{name} ({labels})",
        keys,
        lambda row: " / ".join(_number(row.value(key), digits) for key in keys),
        drop_zero=False,  # Gold's D is 0, and so may every model's be
    )


PAIRED = Column(PAIRED_COLUMN, (MEAN_DIFFERENCE,), LeaderboardRow.paired_cell, False, PAIRED_LEGEND)


@dataclass(frozen=True)
class Leaderboard:
    """Original, Gold and each method's rows, in two views: ``compact`` (CLEAR's five columns,
    the objective with the D and n of each task it combines, tuned − default, net relearn
    recovery, feasible; about ten columns, for reading at a glance) and ``full`` (every column
    some row has). Either view leaves out a column no row has a value of, and an evaluation
    metric that is 0 on every row; :meth:`write_csv` keeps every metric."""

    rows: list[LeaderboardRow]
    heading: str = ""  # which folds and seeds the numbers are on
    objective: str = SearchConfig.objective
    modality: str = DataConfig.modality

    def objective_tasks(self) -> tuple[str, ...]:
        """The forget tasks the objective combines, of those some row was compared on."""
        compared = [
            t for t in TASK_LABELS if any(f"{t}/{KS_STATISTIC}" in r.metrics for r in self.rows)
        ]
        return objective_tasks(self.modality, compared)

    def columns(self, view: str) -> list[Column]:
        if view == FULL:
            candidates = [
                *(metric_column(header, key) for header, key in (*LEADERBOARD, *TASK_COLUMNS)),
                *(
                    metric_column(header, key, drop_zero=False)
                    for header, key in ROBUSTNESS_COLUMNS
                ),
                PAIRED,
            ]
        else:
            tasks = self.objective_tasks()
            candidates = [
                *(
                    metric_column(header, key, legend=CLEAR_LEGEND if i == 0 else "")
                    for i, (header, key) in enumerate(CLEAR_COLUMNS)
                ),
                metric_column(
                    self.objective,
                    self.objective,
                    legend=OBJECTIVE_LEGEND.format(objective=self.objective),
                ),
                *(
                    (
                        tasks_column("D", KS_STATISTIC, ".3g", tasks),
                        tasks_column("n", ITEM_COUNT, ".0f", tasks),
                    )
                    if tasks
                    else ()
                ),
                PAIRED,
                metric_column("net relearn recovery", NET_RECOVERY, False, NET_LEGEND),
            ]
        return [column for column in candidates if column.shown(self.rows)]

    def markdown(self, view: str = COMPACT) -> str:
        """The table in ``view`` under the heading; the compact one with a line on its columns."""
        columns, full = self.columns(view), view == FULL
        header = ["model", *(c.header for c in columns), "feasible", *(["trial"] if full else [])]
        cells = [
            [row.model, *(c.render(row) for c in columns), row.feasible or DASH]
            + ([row.trial or DASH] if full else [])
            for row in self.rows
        ]
        legend = " ".join([*(c.legend for c in columns if c.legend), FILES_LEGEND])
        parts = [self.heading, markdown(header, cells), "" if full else legend]
        return "\n\n".join(part for part in parts if part)

    def metric_keys(self) -> list[str]:
        """Every metric some row has: the full view's order, then the rest sorted."""
        present = {key for row in self.rows for key in row.metrics}
        ordered = [key for _, key in (*LEADERBOARD, *TASK_COLUMNS, *ROBUSTNESS_COLUMNS)]
        known = [key for key in dict.fromkeys(ordered) if key in present]
        return known + sorted(present - set(known))

    def write_csv(self, path: Path) -> None:
        """Every metric of every row at full precision, ``sd <metric>`` after a metric that has
        a spread; an empty cell where a row has no value."""
        header = ["model", "feasible", "trial"]
        for key in self.metric_keys():
            header.append(key)
            if any(row.sd.get(key) is not None for row in self.rows):
                header.append(f"{SD_PREFIX}{key}")
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in self.rows:
                values = {**row.metrics, **{f"{SD_PREFIX}{k}": v for k, v in row.sd.items()}}
                writer.writerow(
                    [row.model, row.feasible, row.trial]
                    + [
                        "" if values.get(name) is None else repr(float(values[name]))
                        for name in header[3:]
                    ]
                )


def read_leaderboard(path: Path) -> dict[str, dict[str, float]]:
    """Model -> {metric: mean} from a leaderboard_full.csv ({} when there is none)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    skip = {"model", "feasible", "trial"}
    return {
        row["model"]: {
            key: float(value)
            for key, value in row.items()
            if key not in skip and not key.startswith(SD_PREFIX) and value != ""
        }
        for row in rows
    }


def method_rows(
    outcome: dict[str, Any], default: dict[str, Any], comparison: SeedComparison | None
) -> list[LeaderboardRow]:
    """A method's rows: its tuned (or best trial's) row, carrying tuned − default when there
    are confirm seeds (``confirm/*``, as on its MLflow run), then its default row if any."""
    rows = []
    if outcome:
        row = LeaderboardRow(**outcome)
        if comparison is not None:
            row = replace(row, metrics={**row.metrics, **comparison_metrics(comparison)})
        rows.append(row)
    if default:
        rows.append(LeaderboardRow(**default))
    return rows


def write_leaderboard(root: Path, board: Leaderboard, view: str, paired: str = "") -> str:
    """leaderboard.md (``view``, then the tuned − default table ``paired``) and
    leaderboard_full.csv (every metric) in ``root``; returns the markdown, for the console."""
    text = board.markdown(view) + (f"\n\n{paired}" if paired else "")
    (root / LEADERBOARD_FILE).write_text(text + "\n")
    board.write_csv(root / LEADERBOARD_CSV)
    return text


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
