"""The trial table: feasible trials first, each with its best epoch and adapter."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = (
    "trial",
    "status",
    "feasible",
    "best_objective",
    "best_forget_metric",
    "best_retain_metric",
    "best_epoch",
)


@dataclass(frozen=True)
class TrialRow:
    trial: str
    status: str  # done | error
    feasible: bool
    best_objective: float
    best_forget_metric: float
    best_retain_metric: float
    best_epoch: int
    params: dict[str, Any]
    adapter: str  # local copy of the best epoch's adapter ("" if none)

    def cells(self, param_names: list[str]) -> list[str]:
        values = [
            self.trial,
            self.status,
            "yes" if self.feasible else "no",
            f"{self.best_objective:.4g}",
            f"{self.best_forget_metric:.4g}",
            f"{self.best_retain_metric:.4g}",
            str(self.best_epoch),
        ]
        return values + [_fmt(self.params.get(name)) for name in param_names]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_rows(results, adapters_dir: Path) -> list[TrialRow]:
    """Rows from a Tune ``ResultGrid``, sorted feasible first, then by objective."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        trial = metrics.get("trial_id") or Path(result.path).name
        adapter = adapters_dir / trial
        rows.append(
            TrialRow(
                trial=trial,
                status="error" if result.error else "done",
                feasible=bool(metrics.get("feasible", 0.0)) and not result.error,
                best_objective=float(metrics.get("best_objective", float("nan"))),
                best_forget_metric=float(metrics.get("best_forget_metric", float("nan"))),
                best_retain_metric=float(metrics.get("best_retain_metric", float("nan"))),
                best_epoch=int(metrics.get("best_epoch", -1)),
                params=dict(result.config or {}),
                adapter=str(adapter) if adapter.is_dir() else "",
            )
        )
    return sorted(rows, key=lambda r: (not r.feasible, -_finite(r.best_objective)))


def _finite(value: float) -> float:
    return value if value == value else float("-inf")


def markdown_table(rows: list[TrialRow], param_names: list[str]) -> str:
    header = [*COLUMNS, *param_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells(param_names)) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(rows: list[TrialRow], param_names: list[str], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, *param_names, "adapter"])
        for row in rows:
            writer.writerow([*row.cells(param_names), row.adapter])
